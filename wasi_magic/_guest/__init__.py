"""Files that run *inside* the guest component, not in the host.

They are copied next to the generated cell module and built by componentize-py;
the host never imports them.
"""
