import pytest

from evaluation import MetricResult, describe


def test_result_is_value_or_reason():
    assert str(MetricResult("psnr", 21.5)) == "psnr: 21.5000"
    missing = MetricResult.unavailable("lpips", "weights absent")
    assert str(missing) == "lpips: unavailable: weights absent"
    assert missing.to_dict() == {"value": None, "unavailable": "weights absent"}
    with pytest.raises(ValueError):
        MetricResult("fid")
    with pytest.raises(ValueError):
        MetricResult("fid", 1.0, "both")


def test_describe_ignores_missing_values():
    stats = describe([1.0, None, 3.0])
    assert stats == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "count": 2}
    assert describe([None])["count"] == 0
