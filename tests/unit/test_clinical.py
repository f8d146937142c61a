"""Pure clinical rules of data/clinical.py that the pages lean on."""
import pytest

from data.clinical import DAYS_PER_MONTH, months_off_therapy


def test_months_off_therapy_count_to_the_cutoff_without_a_restart():
    assert months_off_therapy("2024-01-01", None, 17.25) == (17.25, "to the data cut-off")


def test_months_off_therapy_stop_counting_at_a_restart_and_say_so():
    months, counted_to = months_off_therapy("2024-01-01", "2024-07-01", 30.0)
    assert months == pytest.approx(182 / DAYS_PER_MONTH) and counted_to == "until the restart on 2024-07-01"
