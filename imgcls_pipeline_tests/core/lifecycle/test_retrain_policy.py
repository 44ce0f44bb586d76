import pytest

from imgcls_pipeline.core.lifecycle.retrain_policy import TrainedOn, decide_retrain

SERVED = TrainedOn(version="v0003", class_names=["cat", "dog"], splits_fingerprint="a", photos=200)


def _decide(served=SERVED, *, classes=("cat", "dog"), photos=200, fingerprint="b", fraction=0.1):
    return decide_retrain(
        served,
        class_names=classes,
        photos=photos,
        splits_fingerprint=fingerprint,
        min_new_fraction=fraction,
    )


def test_first_model_is_trained() -> None:
    decision = _decide(None)
    assert decision.retrain and "No model is served" in decision.reason


def test_unchanged_splits_skip_whatever_the_threshold() -> None:
    decision = _decide(fingerprint="a", fraction=0.0)
    assert not decision.retrain
    assert decision.reason == "The train and val splits are unchanged since v0003 was trained."


def test_a_new_class_retrains_even_with_few_photos() -> None:
    decision = _decide(classes=("cat", "dog", "owl"), photos=204)
    assert decision.retrain
    assert decision.new_classes == ("owl",)
    assert "owl" in decision.reason


@pytest.mark.parametrize(
    ("photos", "retrain", "new"),
    [(219, False, 19), (220, True, 20), (260, True, 60), (150, False, 0)],
)
def test_new_photos_are_weighed_against_the_trained_count(photos, retrain, new) -> None:
    decision = _decide(photos=photos)
    assert decision.retrain is retrain
    assert decision.new_photos == new
    assert "v0003" in decision.reason and "of its 200" in decision.reason


def test_zero_fraction_still_needs_a_new_photo() -> None:
    assert not _decide(photos=200, fraction=0.0).retrain  # splits reshuffled, nothing added
    assert _decide(photos=201, fraction=0.0).retrain


def test_unknown_trained_count_retrains_when_the_splits_changed() -> None:
    served = TrainedOn("v0001", ["cat", "dog"], "a", photos=None)
    decision = _decide(served)
    assert decision.retrain and "not recorded" in decision.reason
