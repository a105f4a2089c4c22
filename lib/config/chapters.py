"""The chapters' sections of a profile: chapters.<notebook stem>, one typed model per notebook."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, model_validator

from lib.config.fields import (
    CHAPTER_NAMES,
    ChapterName,
    DatasetName,
    Float,
    Int,
    List,
    NonNegInt,
    PosInt,
    ProfileName,
    Seed,
    _Invalid,
)
from lib.config.messages import _Model
from lib.config.run import RunLayer


class _Chapter(_Model):
    """Settings every chapter may have (lib.study.Chapter reads them)."""

    dataset: DatasetName | None = None  # the chapter's default data set
    runs: dict[DatasetName, RunLayer] = Field(default_factory=dict)  # data set -> run overlay


def _subset(names: list[str] | None, valid: Any, key: str, of: str) -> None:
    unknown = [n for n in names or [] if n not in valid]
    if unknown:
        raise _Invalid(key, f"{', '.join(map(repr, unknown))} not in {of}; it has: {', '.join(map(str, valid))}")


class QuickstartChapter(_Chapter):
    pass


class MechanicsChapter(_Chapter):
    """The losses, miners and Wu's sampler in plain torch (lib.mechanics) against pml's; trains nothing."""

    random_batches: PosInt = 5  # random batches (seeds 0, 1, ...) on which each piece is checked against pml


class PretrainedAblations(_Model):
    """Chapter 1's blog and some of its ablations again, on an ImageNet-pretrained backbone."""

    backbone: RunLayer  # the overlay that makes a run pretrained (model.backbone, pretrained, frozen_stages)
    ablations: List[StrictStr] = Field(default_factory=list)  # names in the chapter's `ablations`


class BelugaCollapseChapter(_Chapter):
    blog: RunLayer  # the blog's configuration
    margins: List[Float]  # margins tried besides the blog's
    ablations: dict[str, RunLayer]  # one factor at a time, each an overlay on `blog`
    only_ablations: List[StrictStr] = None  # type: ignore[assignment]  # absent: all of them
    dimensions: List[PosInt]  # projector sizes evaluated in their own space (the blog's hypothesis)
    metric: StrictStr
    max_fix_steps: NonNegInt
    confirmation_seeds: List[Seed] = Field(min_length=1)  # fresh seeds that test the chosen fix
    tsne_points: PosInt
    pretrained: PretrainedAblations | None = None  # the blog's own regime: an ImageNet-pretrained backbone

    @model_validator(mode="after")
    def _known_ablations(self) -> "BelugaCollapseChapter":
        _subset(self.only_ablations, list(self.ablations), "only_ablations", "ablations")
        if self.pretrained is not None:
            _subset(self.pretrained.ablations, list(self.ablations), "pretrained.ablations", "ablations")
        return self


class MarginSweep(_Model):
    dataset: DatasetName
    strategies: List[StrictStr]
    margins: List[Float]


class MiningChapter(_Chapter):
    datasets: List[DatasetName]
    margin: Float
    strategies: dict[str, RunLayer]
    margin_sweep: MarginSweep

    @model_validator(mode="after")
    def _known_strategies(self) -> "MiningChapter":
        _subset(self.margin_sweep.strategies, list(self.strategies), "margin_sweep.strategies", "strategies")
        return self


class PretrainedMethods(_Model):
    """Some of chapter 3's methods again on an ImageNet-pretrained backbone, against scratch."""

    dataset: DatasetName
    backbone: RunLayer  # the overlay that makes a run pretrained
    methods: List[StrictStr] = Field(min_length=1)  # names in the chapter's `methods`
    # one of `methods` also trained with every stage fine-tuned (model.frozen_stages: 0): what freezing costs
    whole_network: StrictStr | None = None


class DistanceWeightedChapter(_Chapter):
    datasets: List[DatasetName]
    methods: dict[str, RunLayer]
    sphere_dims: List[PosInt]
    gradient_pairs: PosInt
    gradient_augmentations: PosInt
    pretrained: PretrainedMethods | None = None

    @model_validator(mode="after")
    def _known_methods(self) -> "DistanceWeightedChapter":
        if self.pretrained is not None:
            _subset(self.pretrained.methods, list(self.methods), "pretrained.methods", "methods")
            _subset([self.pretrained.whole_network] if self.pretrained.whole_network else [],
                    self.pretrained.methods, "pretrained.whole_network", "pretrained.methods")
        return self


class Anchor(_Model):
    """A published one-shot accuracy, and whether it was measured on Lake's 20 runs themselves."""

    label: StrictStr
    accuracy: Float = Field(ge=0.0, le=1.0)
    on_these_runs: StrictBool


class GridPoint(_Model):
    clusters: PosInt
    recluster_every: PosInt


class DivideAndConquerChapter(_Chapter):
    datasets: List[DatasetName]
    recipe: RunLayer
    clusters: List[PosInt]
    recluster_every: List[PosInt]
    grid_at: GridPoint
    tsne_points: PosInt
    budget_dataset: DatasetName  # where one learner and the grid's centre are also run longer
    budgets: List[PosInt] = Field(min_length=1)  # multiples of the chapter's epochs, 1 first
    # The paper clusters a pretrained network's features. From scratch, the nearest is to train the
    # whole embedding first: the budget runs add the centre with its first N epochs on the whole
    # embedding (divide.warmup_epochs, scaled with the budget), and the ledger judges that arm.
    warm_start_epochs: NonNegInt = 0


class BorrowedRecipe(_Model):
    """A run another chapter trains: {chapter, settings: [keys]} or {chapter, divide: {clusters, recluster_every}};
    `overlay: [keys]` adds a second layer of that chapter's settings (its pretrained backbone, say)."""

    chapter: ChapterName
    settings: List[StrictStr] = None  # type: ignore[assignment]
    overlay: List[StrictStr] = None  # type: ignore[assignment]
    divide: GridPoint = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_of(self) -> "BorrowedRecipe":
        if ("settings" in self.model_fields_set) == ("divide" in self.model_fields_set):
            raise _Invalid("", "give either settings: [keys] or divide: {clusters, recluster_every}, not both or neither")
        return self


class ReidentificationChapter(_Chapter):
    recipes: dict[str, BorrowedRecipe]
    only_recipes: List[StrictStr] = None  # type: ignore[assignment]  # absent: all of them
    divided: StrictStr
    single: StrictStr
    competition_k: PosInt
    humpback_k: PosInt
    catalogue_photos: List[PosInt | None]
    new_fraction: Float = Field(gt=0.0, lt=1.0)
    protocol_seed: Seed
    examples: NonNegInt
    blog_map: Float = Field(ge=0.0, le=1.0)
    humpback_gain: Float
    winners_map: Float | None = Field(None, ge=0.0, le=1.0)  # Where's Whale-do winners' mAP@20, shown beside ours
    # {pretrained recipe: the same recipe from scratch}, compared paired by seed (one Holm family)
    pretrained_pairs: dict[str, StrictStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_recipes(self) -> "ReidentificationChapter":
        _subset(self.only_recipes, list(self.recipes), "only_recipes", "recipes")
        chosen = self.only_recipes if self.only_recipes is not None else list(self.recipes)
        for key in ("divided", "single"):
            _subset([getattr(self, key)], chosen, key, "the recipes this profile runs")
        _subset([n for pair in self.pretrained_pairs.items() for n in pair], list(self.recipes),
                "pretrained_pairs", "recipes")
        return self


class OneshotRecordChapter(_Chapter):
    start: RunLayer  # the road's first recipe, an overlay on the profile's Omniglot run
    ingredients: dict[str, RunLayer]  # tried in this order, each an overlay on the recipe so far
    select_on: StrictStr  # a per-epoch validation metric of the run's history (background classes only)
    # Then test-time views, tried in this order the same way: each adds (dy, dx) pixel shifts to the
    # views kept so far (the image itself always is one); an image's embedding is their mean.
    test_time: dict[str, List[Annotated[List[Int], Field(min_length=2, max_length=2)]]] = Field(default_factory=dict)
    minimal_backgrounds: List[Literal["small1", "small2"]]  # Lake's 5-alphabet sets, for the chosen recipe
    anchors: List[Anchor]


class ClaimsLedgerChapter(_Chapter):
    tables_from: ProfileName  # the profile whose tables the ledger reads


class Chapters(_Model):
    """chapters.<notebook stem>: one typed section per notebook, each optional."""

    quickstart: QuickstartChapter = Field(None, alias="00_quickstart")
    mechanics: MechanicsChapter = Field(None, alias="00b_mechanics")
    beluga_collapse: BelugaCollapseChapter = Field(None, alias="01_beluga_collapse")
    mining: MiningChapter = Field(None, alias="02_mining")
    distance_weighted: DistanceWeightedChapter = Field(None, alias="03_distance_weighted")
    divide_and_conquer: DivideAndConquerChapter = Field(None, alias="04_divide_and_conquer")
    reidentification: ReidentificationChapter = Field(None, alias="05_reidentification")
    oneshot_record: OneshotRecordChapter = Field(None, alias="06_oneshot_record")
    claims_ledger: ClaimsLedgerChapter = Field(None, alias="07_claims_ledger")
    # Not a notebook: the papers' numbers, data set -> {metric: value}, for code that compares.
    published: dict[DatasetName, dict[str, Float]] = Field(None)

    def as_dict(self) -> dict:
        """The sections the profile gives, as plain data keyed by notebook stem."""
        return self.model_dump(by_alias=True, exclude_unset=True)


assert tuple(f.alias or n for n, f in Chapters.model_fields.items()) == CHAPTER_NAMES
