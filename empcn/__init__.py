"""empcn: E(n)-equivariant message passing on geometric cell complexes.

Two stages: ``empcn lift`` turns raw data into CW-complexes with their invariant geometric
features and writes HDF5 shards; ``empcn train`` streams those shards into models.
"""

__version__ = "0.1.0"

from empcn.cache import CacheError, open_cache  # noqa: E402  (public entry points)

__all__ = ["CacheError", "open_cache", "__version__"]
