"""Search algorithms for ember.tune (Ray's ``ray.tune.search``)."""
