;; exit_status.wat: end the program with a chosen exit status.
;;
;; Returning from _start means status 0. Any other status needs proc_exit,
;; which never returns: the host stops the program on the spot and reports
;; the status (wasmtime-py raises wasmtime.ExitTrap, whose .code is 3 here).
;;
;; A Preview 2 component cannot do this: its run function returns only
;; ok or error, so every failure is status 1. A Preview 1 module can
;; report any status from 0 to 125.

(module
  ;; fd_write(fd, iovs, iovs_len, nwritten_out) -> errno  (see hello.wat)
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; proc_exit(status): end the program now with `status`. Never returns.
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  (memory (export "memory") 1)

  ;; Memory layout: iovec at 0..8, byte count at 8..12, text from 16.
  (data (i32.const 16) "exiting with status 3\n")           ;; 22 bytes
  (data (i32.const 48) "this line is never printed\n")      ;; 27 bytes

  ;; $print(address, length): write one buffer to stdout (fd 1).
  (func $print (param $address i32) (param $length i32)
    (i32.store (i32.const 0) (local.get $address))
    (i32.store (i32.const 4) (local.get $length))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (call $print (i32.const 16) (i32.const 22))
    (call $proc_exit (i32.const 3))
    ;; proc_exit does not come back, so this line is dead code.
    (call $print (i32.const 48) (i32.const 27)))
)
