"""shoplake: a local-first emulation of an AWS e-commerce medallion pipeline.

Packages follow the data: stack (native services) -> aws (clients, provisioning) -> ...
-> cli. `config` and `errors` are shared and import none of their siblings.
"""

__version__ = "0.1.0"
