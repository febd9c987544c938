import pytest

from core.errors import InvalidInput
from core.provision.passwords import check_windows_password, generate_password, windows_password_problem


def test_generated_passwords_are_distinct_and_meet_the_windows_rule() -> None:
    made = {generate_password() for _ in range(200)}
    assert len(made) == 200
    assert all(windows_password_problem(p) is None and len(p) == 14 for p in made)


@pytest.mark.parametrize("weak", ["Short1a", "alllower1", "ALLUPPER1", "NoDigitsHere", ""])
def test_weak_windows_passwords_are_refused(weak: str) -> None:
    with pytest.raises(InvalidInput, match="uppercase"):
        check_windows_password(weak)


def test_a_strong_windows_password_passes() -> None:
    assert check_windows_password("Azerty123") == "Azerty123"
    longest = "Aa1" + "x" * 124
    assert check_windows_password(longest) == longest


def test_a_windows_password_longer_than_windows_takes_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at most 127 characters, not 128"):
        check_windows_password("Aa1" + "x" * 125)
