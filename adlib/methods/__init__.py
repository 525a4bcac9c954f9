"""One module (or package) per method: network, loss and detector side by side.
Importing this package registers every detector with adlib.detectors."""
from . import conv_ae  # noqa: F401
from . import deep_if  # noqa: F401
from . import deep_geo  # noqa: F401
from . import cutpaste  # noqa: F401
from . import patchcore  # noqa: F401
from . import simplenet  # noqa: F401
from . import wscxr  # noqa: F401
from . import dpa  # noqa: F401
from . import adversarial_ae  # noqa: F401
from . import egbad  # noqa: F401
from . import anogan  # noqa: F401
from . import vae  # noqa: F401
from . import ssim_ae  # noqa: F401
from . import f_anogan  # noqa: F401
from . import memae  # noqa: F401
from . import salad  # noqa: F401
