;; hello.wat: the smallest useful WASI Preview 1 program.
;;
;; A Preview 1 program is a core WebAssembly module. It imports the system
;; calls it needs from the module "wasi_snapshot_preview1", exports its
;; linear memory as "memory" (so the host can read the bytes it points at),
;; and exports "_start", which the host calls to run it.
;;
;; Run it:  python -m wasi_magic run hello.wasm   (or  wasmtime run hello.wat)

(module
  ;; fd_write(fd, iovs, iovs_len, nwritten_out) -> errno
  ;; Writes the buffers described by `iovs_len` iovecs at address `iovs` to
  ;; file descriptor `fd`, and stores how many bytes it wrote at `nwritten_out`.
  ;; An iovec is two i32s: the address of a buffer, then its length.
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  ;; One 64 KiB page of memory is plenty.
  (memory (export "memory") 1)

  ;; Memory layout:
  ;;   0..8    the iovec (buffer address, buffer length)
  ;;   8..12   where fd_write stores the number of bytes written
  ;;   16..    the text, placed there when the module is instantiated
  (data (i32.const 16) "Hello from WASI Preview 1!\n")      ;; 27 bytes
  (data (i32.const 48) "(this line went to stderr)\n")      ;; 27 bytes

  ;; $write(fd, address, length): write one buffer to a file descriptor.
  ;; The errno it returns is dropped: there is nobody to tell if stdout fails.
  (func $write (param $fd i32) (param $address i32) (param $length i32)
    (i32.store (i32.const 0) (local.get $address))   ;; iovec.buf
    (i32.store (i32.const 4) (local.get $length))    ;; iovec.buf_len
    (drop (call $fd_write
      (local.get $fd)
      (i32.const 0)     ;; the iovec is at address 0
      (i32.const 1)     ;; there is one iovec
      (i32.const 8))))  ;; store the byte count at address 8

  (func (export "_start")
    ;; File descriptors 0, 1 and 2 are stdin, stdout and stderr, as in POSIX.
    (call $write (i32.const 1) (i32.const 16) (i32.const 27))
    (call $write (i32.const 2) (i32.const 48) (i32.const 27)))
  ;; Returning from _start means exit status 0.
)
