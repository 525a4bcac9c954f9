"""One module (or package) per method: network, loss and detector side by side.
Importing this package registers every detector with adlib.detectors."""
from . import conv_ae  # noqa: F401
