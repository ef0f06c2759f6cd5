"""Resource vocabulary: when a shape fits a pool, and the names of placement-group bundles.

Resource amounts are floats (fractional GPUs, 0.001 "bundle" footholds), so every
comparison of an amount with what is free allows a tiny tolerance. ``fits`` is that one
comparison; nothing else in ember compares amounts with a literal epsilon.

A placement group's reserved bundles appear on their node as synthetic resources, so the
ledger needs no special case for them:

    CPU_group_<pg_hex>        every bundle of the group together
    CPU_group_<i>_<pg_hex>    bundle i only
    bundle_group_<pg_hex>     a foothold (1000 per bundle) so a zero-CPU actor can be placed

These names are built and recognised only here.
"""

from __future__ import annotations

from ._types import ResourceShape

#: Tolerance for float resource arithmetic (sums of fractions such as 0.1 * 10).
EPSILON = 1e-9

#: The infix that marks a placement-group resource name.
_GROUP_INFIX = "_group_"
#: A foothold every bundle offers and every request in a group takes.
BUNDLE_RESOURCE = "bundle"
#: How much of the foothold one bundle offers, and how much one request takes.
BUNDLE_OFFER = 1000.0
BUNDLE_TAKE = 0.001


def fits(pool: ResourceShape, shape: ResourceShape) -> bool:
    """True if every amount of ``shape`` is available in ``pool`` (within EPSILON).

    >>> fits({"CPU": 1.0}, {"CPU": 0.1 * 10})
    True
    """
    # A plain loop with the comparison inlined: this runs once per node per scheduling
    # decision, so at 1,000 nodes a generator and a call per resource cost milliseconds.
    for name, amount in shape.items():
        if pool.get(name, 0.0) + EPSILON < amount:
            return False
    return True


def covers(free: float, amount: float) -> bool:
    """One amount against what is free (within EPSILON)."""
    return free + EPSILON >= amount


def fits_ever(totals: ResourceShape, shape: ResourceShape) -> bool:
    """Whether ``shape`` could ever be granted by a node with ``totals``.

    More than one GPU must be a whole number: devices are not split across a request.
    """
    gpus = shape.get("GPU", 0.0)
    return fits(totals, shape) and (gpus <= 1 or is_whole(gpus))


def is_positive(amount: float) -> bool:
    """An amount that is more than float noise (what is left of 0.3 - 0.1 * 3 is not)."""
    return amount > EPSILON


def is_whole(amount: float) -> bool:
    """An amount that is a whole number (within EPSILON), e.g. a count of GPUs."""
    return abs(amount - round(amount)) < EPSILON


def group_resource(name: str, pg_hex: str, index: int | None = None) -> str:
    """The synthetic resource for ``name`` in a group (``index``: one bundle of it)."""
    if index is None:
        return f"{name}{_GROUP_INFIX}{pg_hex}"
    return f"{name}{_GROUP_INFIX}{index}_{pg_hex}"


def is_group_resource(name: str) -> bool:
    """True for a placement-group resource name (appears only once a group is placed)."""
    return _GROUP_INFIX in name


def belongs_to_group(name: str, pg_hex: str) -> bool:
    """True if resource ``name`` is one of group ``pg_hex``'s bundle resources."""
    return _GROUP_INFIX in name and name.endswith(pg_hex)


def without_group_resources(shape: ResourceShape) -> ResourceShape:
    """The shape with placement-group resources left out (for messages to people)."""
    return {name: amount for name, amount in shape.items() if _GROUP_INFIX not in name}


#: The resource a node offers (1.0) for its GPUs' model, Ray's ``accelerator_type:<model>``;
#: ``accelerator_type=`` requests a sliver of it.
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"


def plain_resources(shape: ResourceShape) -> ResourceShape:
    """A request's shape in the names the user asked for: group-wide placement-group
    resources back to their plain names, per-bundle views and the foothold left out
    (``get_assigned_resources``)."""
    out: dict[str, float] = {}
    for name, amount in shape.items():
        if _GROUP_INFIX in name:
            base, rest = name.split(_GROUP_INFIX, 1)
            if base == BUNDLE_RESOURCE or "_" in rest:  # the foothold, or one bundle's view
                continue
            name = base
        out[name] = amount
    return out


def bundle_resources(pg_hex: str, bundles: list[tuple[int, ResourceShape]]) -> ResourceShape:
    """The synthetic resources a node's (index, bundle) pairs of a placed group add to it:
    per bundle and group-wide."""
    out: dict[str, float] = {}
    for i, bundle in bundles:
        for name, amount in {**bundle, BUNDLE_RESOURCE: BUNDLE_OFFER}.items():
            for key in (group_resource(name, pg_hex, i), group_resource(name, pg_hex)):
                out[key] = out.get(key, 0.0) + amount
    return out


def in_bundle(shape: ResourceShape, pg_hex: str, index: int | None) -> ResourceShape:
    """Rewrite a request's shape onto a group's bundle resources (``index`` None or < 0:
    any bundle of the group)."""
    # A zero-CPU actor still needs a foothold in the group to be placed there.
    shape = {**shape, BUNDLE_RESOURCE: BUNDLE_TAKE}
    out = {group_resource(name, pg_hex): amount for name, amount in shape.items()}
    if index is not None and index >= 0:
        # Indexed requests use both views, so the group-wide one never over-books a bundle.
        out.update({group_resource(name, pg_hex, index): amount for name, amount in shape.items()})
    return out


def group_of(shape: ResourceShape) -> str | None:
    """The hex id of the placement group a request's shape is rewritten onto, if any."""
    foothold = BUNDLE_RESOURCE + _GROUP_INFIX
    for name in shape:
        if name.startswith(foothold):
            return name.rsplit("_", 1)[1]
    return None


def node_resource(host: str) -> str:
    """The ``node:<ip>`` resource every node offers (1.0) under its own address."""
    return f"node:{host}"
