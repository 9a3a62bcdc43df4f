"""reid2.evaluation.results: the "mean ± std" cells every seed table (tools, bench, projects) prints."""
import math

from reid2.evaluation import format_mean_std


def test_mean_and_sample_std_by_hand():
    assert format_mean_std([1.0, 2.0, 3.0]) == "2.00 ± 1.00"  # mean 2, sum of squares 2, n − 1 = 2
    assert format_mean_std([54.09, 59.63, 57.19]) == "56.97 ± 2.78"  # the README's teacher row
    assert format_mean_std([10, 13], digits=1) == "11.5 ± 2.1"  # |a − b| / sqrt(2)


def test_one_value_shows_no_spread_and_non_finite_values_are_left_out():
    assert format_mean_std([7.25]) == "7.25"
    assert format_mean_std([math.nan, 1.0, 3.0]) == "2.00 ± 1.41"
    assert format_mean_std([math.nan]) == format_mean_std([]) == "-"
