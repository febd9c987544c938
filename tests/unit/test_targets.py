from pathlib import Path

import pytest
from support.cli import vm_manager

from core.errors import InvalidInput
from core.lifecycle.targets import resolve
from core.metadata import LabMeta
from core.model import VM, VMState
from core.testing import testdriver
from core.testing.testdriver import Spec


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


@pytest.mark.parametrize("bad", ["", " ", "../etc", "-x", "a" * 65])
def test_an_invalid_class_is_refused_before_anything_is_matched(bad: str) -> None:
    """``--class ''`` must not pick every VM without a class (``vm("[b]bold")`` has none)."""
    with pytest.raises(InvalidInput, match="invalid class name"):
        resolve(POOL, ["prof"], ["net101", bad])


def test_cli_delete_with_an_empty_class_is_bad_usage_and_deletes_nothing(tmp_path: Path) -> None:
    uri = testdriver.write(tmp_path / "lab.xml", [
        Spec("unclassed", VMState.SHUTOFF), Spec("stu", VMState.SHUTOFF, meta=LabMeta(lab_class="net101"))])
    out = vm_manager("-c", uri, "delete", "--class", "", "--yes", HOME=str(tmp_path),
                     VMM_DATA_DIR=str(tmp_path / "data"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "invalid class name ''" in out.stderr
    assert "deleted" not in out.stdout
    assert "Traceback" not in out.stderr
