"""Ray's ``ray.experimental`` names that ember has: ``tqdm_ray`` (progress bars from tasks).

Submodules load on first import (``from ember.experimental import tqdm_ray``), so this
package costs nothing until a program asks for one.
"""
