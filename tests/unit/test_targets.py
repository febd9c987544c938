from core.metadata import LabMeta
from core.model import VM, VMState
from core.targets import resolve


def vm(name: str, lab_class: str = "") -> VM:
    return VM("h", name, name, VMState.RUNNING, 1, 512, LabMeta(lab_class=lab_class))


POOL = [vm("stu-1", "net101"), vm("stu-2", "net101"), vm("prof", "sys202"), vm("[b]bold")]


def names(result) -> list[str]:
    return [v.name for v in result.vms]


def test_exact_glob_and_class() -> None:
    assert names(resolve(POOL, ["prof"])) == ["prof"]
    assert names(resolve(POOL, ["stu-*"])) == ["stu-1", "stu-2"]
    assert names(resolve(POOL, [], ["sys202"])) == ["prof"]


def test_no_duplicates_when_named_twice() -> None:
    assert names(resolve(POOL, ["stu-1", "stu-*"], ["net101"])) == ["stu-1", "stu-2"]


def test_a_name_with_glob_characters_is_taken_literally_first() -> None:
    assert names(resolve(POOL, ["[b]bold"])) == ["[b]bold"]


def test_unmatched_are_reported_as_written() -> None:
    result = resolve(POOL, ["nope", "x-*"], ["ghost"])
    assert result.vms == []
    assert result.unmatched == ["nope", "x-*", "--class ghost"]
