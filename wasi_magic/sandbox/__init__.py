"""The sandbox layer: where guests run, how they are limited, stopped and supervised.

- :mod:`.shim`: every private wasmtime-py call, in one module;
- :mod:`.store`: (Capabilities, Limits) -> a Wasmtime store, its deadline and trap text;
- :mod:`.protocol`: the frames between the kernel and a worker;
- :mod:`.worker`: the process that holds the engines, compiled components and stores;
- :mod:`.supervisor`: the kernel side (start, spare, deadline, Interrupt, kill, restart);
- :mod:`.remote`: typed-world components loaded in the worker, called from the kernel.
"""
