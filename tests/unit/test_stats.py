import pytest

from core.virt import stats

RAW_1 = {"cpu.time": 10_000_000_000, "vcpu.current": 2, "balloon.rss": 204800,
         "block.count": 2, "block.0.rd.bytes": 1000, "block.0.wr.bytes": 0,
         "block.1.rd.bytes": 1000, "block.1.wr.bytes": 500,
         "net.count": 1, "net.0.rx.bytes": 0, "net.0.tx.bytes": 100}
RAW_2 = {**RAW_1, "cpu.time": 11_000_000_000, "block.0.rd.bytes": 5000, "net.0.rx.bytes": 2048}


def test_rates_between_two_samples() -> None:
    old = stats.sample(RAW_1, at=100.0, vcpus=2)
    new = stats.sample(RAW_2, at=102.0, vcpus=2)
    fig = stats.figures(new, old)
    # 1 s of CPU time in 2 s of wall time, over 2 vCPUs: 25 %.
    assert fig.cpu_percent == pytest.approx(25.0)
    assert fig.mem_used_mib is None  # QEMU's RSS alone: the guest said nothing
    assert fig.disk_read_bps == pytest.approx(2000.0)
    assert fig.disk_write_bps == 0
    assert fig.net_rx_bps == pytest.approx(1024.0)


def test_first_sample_has_memory_but_no_rates() -> None:
    raw = {**RAW_1, "balloon.available": 1048576, "balloon.unused": 524288}
    fig = stats.figures(stats.sample(raw, 1.0, 2), None)
    assert fig.cpu_percent is None
    assert fig.disk_read_bps is None
    assert fig.mem_used_mib == pytest.approx(512.0)


def test_guest_reported_memory_wins_over_rss() -> None:
    raw = {**RAW_1, "balloon.available": 1048576, "balloon.unused": 524288}
    assert stats.figures(stats.sample(raw, 1.0, 2), None).mem_used_mib == pytest.approx(512.0)


def test_guest_memory_is_what_it_has_but_could_still_hand_out() -> None:
    # usable (free + reclaimable cache, as MemAvailable) over unused (plainly free) when both come
    raw = {**RAW_1, "balloon.current": 1048576, "balloon.available": 1000000,
           "balloon.unused": 100000, "balloon.usable": 700000}
    assert stats.guest_memory_used_kib(raw) == 300000
    assert stats.guest_memory_used_kib({**RAW_1, "balloon.current": 1048576}) is None  # no driver
    assert stats.guest_memory_used_kib({**RAW_1, "balloon.available": 1000000}) is None  # half a report


def test_driver_without_figures_gives_none_never_zero() -> None:
    old, new = stats.sample({"state.state": 1}, 1.0, 1), stats.sample({"state.state": 1}, 3.0, 1)
    fig = stats.figures(new, old)
    assert (fig.cpu_percent, fig.mem_used_mib, fig.net_rx_bps, fig.disk_write_bps) == (None,) * 4


def test_counter_reset_gives_no_rate() -> None:
    old = stats.sample(RAW_2, 1.0, 2)
    new = stats.sample(RAW_1, 3.0, 2)  # the VM restarted: counters went back
    assert stats.figures(new, old).cpu_percent is None


def test_host_cpu_percent() -> None:
    old = {"user": 100, "kernel": 100, "idle": 800, "iowait": 0}
    new = {"user": 200, "kernel": 150, "idle": 1150, "iowait": 0}
    assert stats.host_cpu_percent(new, old) == pytest.approx(30.0)
    assert stats.host_cpu_percent(new, None) is None


def test_disks_are_what_their_images_take_on_the_host_and_their_size_to_the_guest() -> None:
    raw = {**RAW_1, "block.0.physical": 12 * 2**20, "block.0.capacity": 2**30,
           "block.1.allocation": 4 * 2**20, "block.1.capacity": 2**30}  # a driver without physical
    for fig in (stats.figures(stats.sample(raw, 1.0, 2), None),
                stats.figures(stats.sample(raw, 3.0, 2), stats.sample(RAW_1, 1.0, 2))):
        assert fig.disk_used_mib == pytest.approx(12.0)  # physical wherever a disk gives it
        assert fig.disk_size_mib == pytest.approx(2048.0)
    nothing = stats.figures(stats.sample(RAW_1, 1.0, 2), None)
    assert (nothing.disk_used_mib, nothing.disk_size_mib) == (None, None)
