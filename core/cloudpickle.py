"""``ember.cloudpickle``: the cloudpickle ember pickles functions and values with (Ray's
``ray.cloudpickle``).

A re-export, not a copy: values pickled with it are the ones ember's workers read.
An ``ObjectRef`` pickled with it (outside ember's own serialization) stays valid in any
process of the cluster for as long as its owner lives, as in Ray.

Example:
    >>> from ember import cloudpickle
    >>> cloudpickle.loads(cloudpickle.dumps(lambda x: x + 1))(1)
    2
"""

from cloudpickle import (CloudPickler, Pickler, dump, dumps, load, loads, register_pickle_by_value,
                         unregister_pickle_by_value)

__all__ = ["CloudPickler", "Pickler", "dump", "dumps", "load", "loads", "register_pickle_by_value",
           "unregister_pickle_by_value"]
