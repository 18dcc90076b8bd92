;; args_env.wat: print the program's arguments and environment variables.
;;
;; A Preview 1 program gets nothing unless the host grants it: the arguments
;; are the ones after `--` (argv[0] is the program's name), and the
;; environment holds only the variables named with --env.
;;
;; Both lists are fetched in two steps, like this:
;;   1. args_sizes_get tells how many arguments there are and how many bytes
;;      their text takes (each ends in a NUL byte);
;;   2. the program makes room for a table of pointers and for the text, and
;;      args_get fills both in: pointer i points at argument i in the text.
;; environ_sizes_get and environ_get work the same way; each entry of the
;; environment is one "NAME=VALUE" string.
;;
;; Output:
;;   argc: 2
;;   argv[0]: args_env.wasm
;;   argv[1]: one
;;   environ count: 1
;;   environ[0]: MY_VAR=hello

(module
  ;; args_sizes_get(argc_out, argv_buf_size_out) -> errno
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  ;; args_get(argv_out, argv_buf_out) -> errno
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  ;; environ_sizes_get(count_out, buf_size_out) -> errno
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  ;; environ_get(environ_out, environ_buf_out) -> errno
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  ;; fd_write(fd, iovs, iovs_len, nwritten_out) -> errno  (see hello.wat)
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; Memory layout:
  ;;   0..8      iovec for $print
  ;;   8..12     byte count written by fd_write
  ;;   16..20    a count (argc, or number of variables)
  ;;   20..24    a size in bytes (of all the argument or variable text)
  ;;   32..48    digits of a number being printed
  ;;   64..256   the fixed text below
  ;;   1024..    the heap: tables and text handed out by $alloc
  (data (i32.const 64) "argc: ")             ;; 6 bytes
  (data (i32.const 80) "argv[")              ;; 5 bytes
  (data (i32.const 96) "]: ")                ;; 3 bytes
  (data (i32.const 112) "environ count: ")   ;; 15 bytes
  (data (i32.const 128) "environ[")          ;; 8 bytes
  (data (i32.const 144) "\n")                ;; 1 byte
  (data (i32.const 160) "args_get failed\n")     ;; 16 bytes
  (data (i32.const 192) "environ_get failed\n")  ;; 19 bytes

  ;; The next free address of the heap.
  (global $heap (mut i32) (i32.const 1024))

  ;; $alloc(size) -> address: hand out `size` bytes of the heap, rounded up
  ;; to 4 so that tables of pointers stay aligned. Grows the memory by whole
  ;; 64 KiB pages when the heap runs past its end, and traps if it cannot.
  (func $alloc (param $size i32) (result i32)
    (local $address i32)
    (local.set $address (global.get $heap))
    (global.set $heap
      (i32.and
        (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 3))
        (i32.const -4)))
    ;; memory.size counts pages; a page is 65536 bytes (1 << 16).
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

  ;; $print(address, length): write one buffer to stdout (fd 1).
  (func $print (param $address i32) (param $length i32)
    (i32.store (i32.const 0) (local.get $address))
    (i32.store (i32.const 4) (local.get $length))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

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

  ;; $print_number(n): print an unsigned number in decimal. The digits are
  ;; produced last one first, so they are written backwards from address 48.
  (func $print_number (param $n i32)
    (local $at i32)
    (local.set $at (i32.const 48))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))  ;; 48 is '0'
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (call $print (local.get $at) (i32.sub (i32.const 48) (local.get $at))))

  ;; $print_list(label, label_length, table, count): for each of the `count`
  ;; string pointers in `table`, print "<label>i]: <string>\n".
  (func $print_list (param $label i32) (param $label_length i32)
                    (param $table i32) (param $count i32)
    (local $i i32)
    (local $string i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        ;; the i-th pointer is at table + 4 * i
        (local.set $string
          (i32.load (i32.add (local.get $table) (i32.shl (local.get $i) (i32.const 2)))))
        (call $print (local.get $label) (local.get $label_length))
        (call $print_number (local.get $i))
        (call $print (i32.const 96) (i32.const 3))              ;; "]: "
        (call $print (local.get $string) (call $strlen (local.get $string)))
        (call $print (i32.const 144) (i32.const 1))             ;; "\n"
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  (func (export "_start")
    (local $count i32)
    (local $table i32)
    (local $text i32)

    ;; --- the arguments ---
    (if (call $args_sizes_get (i32.const 16) (i32.const 20))
      (then (call $print (i32.const 160) (i32.const 16)) (return)))
    (local.set $count (i32.load (i32.const 16)))
    (local.set $table (call $alloc (i32.shl (local.get $count) (i32.const 2))))
    (local.set $text (call $alloc (i32.load (i32.const 20))))
    (if (call $args_get (local.get $table) (local.get $text))
      (then (call $print (i32.const 160) (i32.const 16)) (return)))
    (call $print (i32.const 64) (i32.const 6))                  ;; "argc: "
    (call $print_number (local.get $count))
    (call $print (i32.const 144) (i32.const 1))
    (call $print_list (i32.const 80) (i32.const 5) (local.get $table) (local.get $count))

    ;; --- the environment ---
    (if (call $environ_sizes_get (i32.const 16) (i32.const 20))
      (then (call $print (i32.const 192) (i32.const 19)) (return)))
    (local.set $count (i32.load (i32.const 16)))
    (local.set $table (call $alloc (i32.shl (local.get $count) (i32.const 2))))
    (local.set $text (call $alloc (i32.load (i32.const 20))))
    (if (call $environ_get (local.get $table) (local.get $text))
      (then (call $print (i32.const 192) (i32.const 19)) (return)))
    (call $print (i32.const 112) (i32.const 15))                ;; "environ count: "
    (call $print_number (local.get $count))
    (call $print (i32.const 144) (i32.const 1))
    (call $print_list (i32.const 128) (i32.const 8) (local.get $table) (local.get $count)))
)
