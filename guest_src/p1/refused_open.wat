;; refused_open.wat: what a Preview 1 program gets when it opens a file it
;; was not granted.
;;
;; Preview 1 has no "open this absolute path" call. Every file is opened with
;; path_open *relative to a directory file descriptor*, and the only
;; directories a program has are the ones the host preopened for it: the
;; first --dir grant is fd 3, the next fd 4, and so on. This program does
;; not look at what it was given; it simply tries two paths relative to fd 3:
;;
;;   input.txt       a file inside the granted directory
;;   ../secret.txt   a file next to it, outside the grant
;;
;; and prints, for each, the fd it got or the errno number it was refused
;; with. Without --dir there is no fd 3 and both fail; with a grant the
;; first succeeds and the second is still refused: ".." cannot climb out of
;; a preopened directory.
;;
;; Output without any grant:
;;   open input.txt: failed, errno 8 (badf)
;;   open ../secret.txt: failed, errno 8 (badf)

(module
  ;; path_open(dir_fd, lookup_flags, path, path_len, open_flags,
  ;;           rights_base, rights_inheriting, fd_flags, fd_out) -> errno
  ;; Opens `path` (not NUL-terminated: address and length) relative to the
  ;; directory `dir_fd`, and stores the new file descriptor at `fd_out`.
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  ;; fd_close(fd) -> errno
  (import "wasi_snapshot_preview1" "fd_close"
    (func $fd_close (param i32) (result i32)))
  ;; fd_write(fd, iovs, iovs_len, nwritten_out) -> errno  (see hello.wat)
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; Memory layout:
  ;;   0..8      iovec for $print
  ;;   8..12     byte count written by fd_write
  ;;   12..16    the file descriptor path_open stores
  ;;   16..32    digits of a number being printed (written backwards from 32)
  ;;   64..      fixed text
  (data (i32.const 64) "input.txt")          ;; 9 bytes
  (data (i32.const 80) "../secret.txt")      ;; 13 bytes
  (data (i32.const 96) "open ")              ;; 5 bytes
  (data (i32.const 112) ": ok, got fd ")     ;; 13 bytes
  (data (i32.const 128) ": failed, errno ")  ;; 16 bytes
  (data (i32.const 144) " (")                ;; 2 bytes
  (data (i32.const 148) ")\n")               ;; 2 bytes
  (data (i32.const 152) "\n")                ;; 1 byte
  ;; Names of the errno values a refused open is likely to get, from the
  ;; WASI Preview 1 specification (witx "errno" type).
  (data (i32.const 160) "acces")             ;;  2: permission denied
  (data (i32.const 168) "badf")              ;;  8: not an open file descriptor
  (data (i32.const 176) "inval")             ;; 28: invalid argument
  (data (i32.const 184) "noent")             ;; 44: no such file or directory
  (data (i32.const 192) "notdir")            ;; 54: not a directory
  (data (i32.const 200) "perm")              ;; 63: operation not permitted
  (data (i32.const 208) "notcapable")        ;; 76: not allowed by the capabilities
  (data (i32.const 224) "other")

  ;; $print(address, length): write one buffer to stdout (fd 1).
  (func $print (param $address i32) (param $length i32)
    (i32.store (i32.const 0) (local.get $address))
    (i32.store (i32.const 4) (local.get $length))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; $print_number(n): print an unsigned number in decimal.
  (func $print_number (param $n i32)
    (local $at i32)
    (local.set $at (i32.const 32))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))  ;; 48 is '0'
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (call $print (local.get $at) (i32.sub (i32.const 32) (local.get $at))))

  ;; $print_errno_name(errno): print the errno's name from the table above.
  (func $print_errno_name (param $errno i32)
    (if (i32.eq (local.get $errno) (i32.const 2))
      (then (return (call $print (i32.const 160) (i32.const 5)))))
    (if (i32.eq (local.get $errno) (i32.const 8))
      (then (return (call $print (i32.const 168) (i32.const 4)))))
    (if (i32.eq (local.get $errno) (i32.const 28))
      (then (return (call $print (i32.const 176) (i32.const 5)))))
    (if (i32.eq (local.get $errno) (i32.const 44))
      (then (return (call $print (i32.const 184) (i32.const 5)))))
    (if (i32.eq (local.get $errno) (i32.const 54))
      (then (return (call $print (i32.const 192) (i32.const 6)))))
    (if (i32.eq (local.get $errno) (i32.const 63))
      (then (return (call $print (i32.const 200) (i32.const 4)))))
    (if (i32.eq (local.get $errno) (i32.const 76))
      (then (return (call $print (i32.const 208) (i32.const 10)))))
    (call $print (i32.const 224) (i32.const 5)))

  ;; $try_open(path, path_length): open the path relative to fd 3 for
  ;; reading and print what happened. A file that opens is closed again.
  (func $try_open (param $path i32) (param $path_length i32)
    (local $errno i32)
    (local.set $errno
      (call $path_open
        (i32.const 3)                ;; relative to fd 3, the first preopen (if any)
        (i32.const 1)                ;; lookup flags: follow symbolic links
        (local.get $path) (local.get $path_length)
        (i32.const 0)                ;; open flags: no create, no truncate
        (i64.const 2)                ;; rights: fd_read (bit 1)
        (i64.const 0)                ;; rights passed on to fds opened from it: none
        (i32.const 0)                ;; fd flags: none
        (i32.const 12)))             ;; store the new fd at address 12
    (call $print (i32.const 96) (i32.const 5))                   ;; "open "
    (call $print (local.get $path) (local.get $path_length))
    (if (i32.eqz (local.get $errno))
      (then
        (call $print (i32.const 112) (i32.const 13))             ;; ": ok, got fd "
        (call $print_number (i32.load (i32.const 12)))
        (call $print (i32.const 152) (i32.const 1))              ;; "\n"
        (drop (call $fd_close (i32.load (i32.const 12)))))
      (else
        (call $print (i32.const 128) (i32.const 16))             ;; ": failed, errno "
        (call $print_number (local.get $errno))
        (call $print (i32.const 144) (i32.const 2))              ;; " ("
        (call $print_errno_name (local.get $errno))
        (call $print (i32.const 148) (i32.const 2)))))           ;; ")\n"

  (func (export "_start")
    (call $try_open (i32.const 64) (i32.const 9))     ;; input.txt
    (call $try_open (i32.const 80) (i32.const 13)))   ;; ../secret.txt
)
