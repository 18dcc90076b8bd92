"""Files that run *inside* the guest component, not in the host.

They are copied next to the generated cell module and built by componentize-py;
the host never imports them, except ``wasi_magic_imports``: the scan that finds a
cell's imports, which either Python may run (see that module).
"""
