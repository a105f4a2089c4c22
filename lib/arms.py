"""The arm (setting) names more than one module spells: the chapters that train an arm, the claims
(`lib.claims`) that name it, and the ledger (`lib.ledger`) that judges it all read them from here, so a
renamed arm cannot leave a claim pointing at a setting no chapter runs.

A name that is also a key in params/*.yaml (a mining strategy, a loss method, an ablation) is spelled
here as the YAML spells it; tests/test_arms.py checks that every arm the claims and the confirmatory
declaration name is one the profile's chapters plan, and that no other lib module spells these strings.

    from lib import arms
    arms.blog_name(0.5)                            # 'blog (margin 0.5)'
    arms.budget_setting(arms.SINGLE, 4)            # 'K=1 (single learner), 4x budget'
"""
from __future__ import annotations

# Chapter 0, and chapter 3's baseline (a key of chapters.03_distance_weighted.methods)
SEMI_HARD_TRIPLET = "semi-hard triplet"

# Chapter 1: the blog's configuration, its dimensionality arms, the minimal fix and the pretrained regime
KEPT_AT_TEST = "projector kept at test"  # the reference arm of the dimensionality test (256-d); an ablation key
MINIMAL_FIX = "minimal fix"
FRESH = " (fresh seeds)"  # suffix of an arm run again on the confirmation seeds
PRETRAINED_REGIME = "pretrained: "  # prefix: the same setting on an ImageNet-pretrained backbone (the blog's regime)


def blog_name(margin) -> str:
    """The blog's configuration at `margin`, as chapter 1 names it (the margin as the YAML writes it)."""
    return f"blog (margin {margin})"


def dimension_arm(dim: int) -> str:
    """Chapter 1's arm with a `dim`-d embedding, evaluated in that space."""
    return f"embedding {dim}, evaluated at {dim}-d"


# Chapter 2: mining strategies (keys of chapters.02_mining.strategies)
SEMI_HARD = "semi-hard"
HARD = "hard"
BATCH_HARD = "batch-hard (Hermans)"

# Chapter 3: the margin loss with distance-weighted sampling (a key of chapters.03_distance_weighted.methods)
WU = "margin loss, distance-weighted (Wu)"
PRETRAINED = ", pretrained"  # suffix of a method run on the `pretrained` section's backbone

# Chapter 4: divide and conquer
SINGLE = "K=1 (single learner)"


def grid_setting(clusters: int, recluster_every: int) -> str:
    """The divide-and-conquer arm with K = `clusters` learners, re-clustered every M epochs."""
    return f"K={clusters}, M={recluster_every}"


def warm_start_setting(arm: str) -> str:
    """The setting name of divide-and-conquer `arm` with its first epochs on the whole embedding (chapter 4)."""
    return f"{arm}, warm start"


def budget_setting(arm: str, multiple: int) -> str:
    """The setting name of `arm` trained at `multiple` times its chapter's budget (chapter 4)."""
    return arm if multiple == 1 else f"{arm}, {multiple}x budget"


# Chapter 6
CHOSEN_ONESHOT = "chosen recipe"  # chapter 6 records its chosen recipe's runs under this name
