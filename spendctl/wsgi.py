import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spendctl.settings.base")
application = get_wsgi_application()
# Everything loaded so far (Django, DRF, the price catalog) lives as long as the worker: moved out of the cyclic
# collector's generations, so that its full collections walk only what requests create.
gc.freeze()
