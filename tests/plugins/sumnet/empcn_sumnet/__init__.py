"""empcn-sumnet: a small invariant model (:mod:`.model`) and an L2 scalar task (:mod:`.task`) for empcn."""
