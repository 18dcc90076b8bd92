;; cat.wat: print a file from the granted directory.
;;
;;   python -m wasi_magic run cat.wasm --dir data::/data -- input.txt
;;
;; A Preview 1 program opens files relative to a directory it was granted
;; (a "preopen"). The host numbers the preopens from fd 3 (0, 1 and 2 are
;; stdin, stdout and stderr), and fd_prestat_get / fd_prestat_dir_name tell
;; the program what each one is. This is what a C library does behind
;; fopen("/data/input.txt"): find the preopen called /data and open
;; "input.txt" relative to it. This program does the same for the first
;; preopen only, so both `input.txt` and `/data/input.txt` work.
;;
;; Steps: take the file name from argv[1]; ask fd_prestat_get whether fd 3
;; is a preopened directory and fd_prestat_dir_name for its name; drop that
;; name from the front of the file name; path_open the file relative to fd 3;
;; then fd_read blocks of it and fd_write them to stdout until fd_read
;; reads 0 bytes (the end of the file).
;;
;; Errors go to stderr, with exit status 1 (2 for a missing argument).

(module
  ;; args_sizes_get(argc_out, argv_buf_size_out) -> errno   (see args_env.wat)
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  ;; args_get(argv_out, argv_buf_out) -> errno
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  ;; fd_prestat_get(fd, prestat_out) -> errno
  ;; If `fd` is a preopened directory, stores 8 bytes at `prestat_out`: a
  ;; tag byte (0 means "directory"), 3 bytes of padding, then the length of
  ;; the directory's name as an i32. Fails with errno 8 (badf) otherwise.
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $fd_prestat_get (param i32 i32) (result i32)))
  ;; fd_prestat_dir_name(fd, name_out, name_len) -> errno
  ;; Copies the preopen's name (the GUEST part of --dir HOST::GUEST).
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name"
    (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  ;; path_open(dir_fd, lookup_flags, path, path_len, open_flags,
  ;;           rights_base, rights_inheriting, fd_flags, fd_out) -> errno
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  ;; fd_read(fd, iovs, iovs_len, nread_out) -> errno: the mirror of fd_write.
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  ;; fd_write(fd, iovs, iovs_len, nwritten_out) -> errno   (see hello.wat)
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; fd_close(fd) -> errno
  (import "wasi_snapshot_preview1" "fd_close"
    (func $fd_close (param i32) (result i32)))
  ;; proc_exit(status): end the program now.   (see exit_status.wat)
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  (memory (export "memory") 1)

  ;; Memory layout:
  ;;   0..8      iovec for writing
  ;;   8..12     byte count written by fd_write
  ;;   12..16    the file descriptor path_open stores
  ;;   16..20    argc
  ;;   20..24    bytes of argument text
  ;;   24..32    the prestat of fd 3
  ;;   32..40    iovec for reading
  ;;   40..44    byte count read by fd_read
  ;;   48..64    digits of a number being printed (written backwards from 64)
  ;;   64..      fixed text
  ;;   1024..    the heap (see $alloc)
  (data (i32.const 64) "usage: cat.wasm FILE  (FILE inside the first --dir grant)\n")  ;; 58
  (data (i32.const 128) "cat: no directory was granted: fd_prestat_get(3) failed with errno ")  ;; 67
  (data (i32.const 208) "cat: cannot open ")                       ;; 17
  (data (i32.const 232) ": errno ")                                ;; 8
  (data (i32.const 240) "cat: read failed: errno ")                ;; 24
  (data (i32.const 272) "cat: write failed: errno ")               ;; 25
  (data (i32.const 304) "\n")                                      ;; 1

  ;; The next free address of the heap.
  (global $heap (mut i32) (i32.const 1024))

  ;; $alloc(size) -> address: hand out `size` bytes of the heap (rounded up
  ;; to 4), growing the memory by whole pages when needed.
  (func $alloc (param $size i32) (result i32)
    (local $address i32)
    (local.set $address (global.get $heap))
    (global.set $heap
      (i32.and
        (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 3))
        (i32.const -4)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.sub
                  (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))
                  (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (local.get $address))

  ;; $write_all(fd, address, length) -> errno: write the whole buffer.
  ;; fd_write may write less than asked, so keep going until all is written.
  (func $write_all (param $fd i32) (param $address i32) (param $length i32) (result i32)
    (local $errno i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $length)))
        (i32.store (i32.const 0) (local.get $address))
        (i32.store (i32.const 4) (local.get $length))
        (local.set $errno
          (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (local.get $errno))
        (local.set $address (i32.add (local.get $address) (i32.load (i32.const 8))))
        (local.set $length (i32.sub (local.get $length) (i32.load (i32.const 8))))
        (br $more)))
    (local.get $errno))

  ;; $say(address, length): write a message to stderr (fd 2).
  (func $say (param $address i32) (param $length i32)
    (drop (call $write_all (i32.const 2) (local.get $address) (local.get $length))))

  ;; $say_number(n): write an unsigned number in decimal to stderr.
  (func $say_number (param $n i32)
    (local $at i32)
    (local.set $at (i32.const 64))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))  ;; 48 is '0'
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (call $say (local.get $at) (i32.sub (i32.const 64) (local.get $at))))

  ;; $fail(address, length, errno): "<message><errno>\n" to stderr, exit 1.
  (func $fail (param $address i32) (param $length i32) (param $errno i32)
    (call $say (local.get $address) (local.get $length))
    (call $say_number (local.get $errno))
    (call $say (i32.const 304) (i32.const 1))
    (call $proc_exit (i32.const 1)))

  ;; $strlen(address) -> length of the NUL-terminated string at `address`.
  (func $strlen (param $address i32) (result i32)
    (local $end i32)
    (local.set $end (local.get $address))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (local.get $end))))
        (local.set $end (i32.add (local.get $end) (i32.const 1)))
        (br $next)))
    (i32.sub (local.get $end) (local.get $address)))

  ;; $starts_with(text, text_length, prefix, prefix_length) -> 1 or 0
  (func $starts_with (param $text i32) (param $text_length i32)
                     (param $prefix i32) (param $prefix_length i32) (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $text_length) (local.get $prefix_length))
      (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.eq (local.get $i) (local.get $prefix_length)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $text) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $prefix) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  (func (export "_start")
    (local $errno i32)
    (local $table i32)
    (local $name i32)
    (local $name_length i32)
    (local $dir i32)
    (local $dir_length i32)
    (local $fd i32)
    (local $buffer i32)
    (local $count i32)

    ;; 1. The file name is argv[1].
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 2))
      (then
        (call $say (i32.const 64) (i32.const 58))
        (call $proc_exit (i32.const 2))))
    (local.set $table (call $alloc (i32.shl (i32.load (i32.const 16)) (i32.const 2))))
    (drop (call $args_get (local.get $table) (call $alloc (i32.load (i32.const 20)))))
    (local.set $name (i32.load offset=4 (local.get $table)))   ;; argv[1]
    (local.set $name_length (call $strlen (local.get $name)))

    ;; 2. Is fd 3 a preopened directory, and what is it called?
    (local.set $errno (call $fd_prestat_get (i32.const 3) (i32.const 24)))
    (if (local.get $errno)
      (then (call $fail (i32.const 128) (i32.const 67) (local.get $errno))))
    (local.set $dir_length (i32.load (i32.const 28)))
    (local.set $dir (call $alloc (local.get $dir_length)))
    (drop (call $fd_prestat_dir_name (i32.const 3) (local.get $dir) (local.get $dir_length)))

    ;; 3. "/data/input.txt" -> "input.txt": if the name starts with the
    ;;    directory's name followed by "/", drop both.
    (if (i32.and
          (call $starts_with (local.get $name) (local.get $name_length)
                             (local.get $dir) (local.get $dir_length))
          (i32.eq (i32.load8_u (i32.add (local.get $name) (local.get $dir_length)))
                  (i32.const 47)))                             ;; 47 is '/'
      (then
        (local.set $name
          (i32.add (local.get $name) (i32.add (local.get $dir_length) (i32.const 1))))
        (local.set $name_length
          (i32.sub (local.get $name_length) (i32.add (local.get $dir_length) (i32.const 1))))))

    ;; 4. Open the file for reading, relative to fd 3.
    (local.set $errno
      (call $path_open
        (i32.const 3)                ;; the directory fd
        (i32.const 1)                ;; lookup flags: follow symbolic links
        (local.get $name) (local.get $name_length)
        (i32.const 0)                ;; open flags: no create, no truncate
        (i64.const 2)                ;; rights: fd_read (bit 1)
        (i64.const 0)                ;; rights for fds opened from this one: none
        (i32.const 0)                ;; fd flags: none
        (i32.const 12)))             ;; store the new fd at address 12
    (if (local.get $errno)
      (then
        (call $say (i32.const 208) (i32.const 17))            ;; "cat: cannot open "
        (call $say (local.get $name) (local.get $name_length))
        (call $fail (i32.const 232) (i32.const 8) (local.get $errno))))
    (local.set $fd (i32.load (i32.const 12)))

    ;; 5. Copy the file to stdout, 4 KiB at a time.
    (local.set $buffer (call $alloc (i32.const 4096)))
    (block $end_of_file
      (loop $next_block
        (i32.store (i32.const 32) (local.get $buffer))
        (i32.store (i32.const 36) (i32.const 4096))
        (local.set $errno
          (call $fd_read (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40)))
        (if (local.get $errno)
          (then (call $fail (i32.const 240) (i32.const 24) (local.get $errno))))
        (local.set $count (i32.load (i32.const 40)))
        (br_if $end_of_file (i32.eqz (local.get $count)))
        (local.set $errno (call $write_all (i32.const 1) (local.get $buffer) (local.get $count)))
        (if (local.get $errno)
          (then (call $fail (i32.const 272) (i32.const 25) (local.get $errno))))
        (br $next_block)))
    (drop (call $fd_close (local.get $fd))))
)
