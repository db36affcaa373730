"""Claims on shared work: exclusive, renewed while held, taken over once expired, released when done."""
import os
import threading
import time

import pytest

from course_lib.programs.claims import Claim


def test_only_one_of_many_concurrent_claimants_wins(tmp_path):
    path, winners = tmp_path / "work.claim", []
    claims = [Claim(path, lease_s=60) for _ in range(16)]
    barrier = threading.Barrier(len(claims))

    def claim(c):
        barrier.wait()
        if c.acquire():
            winners.append(c)
    threads = [threading.Thread(target=claim, args=(c,)) for c in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and winners[0].owner()["token"] == winners[0].token
    winners[0].release()
    assert not path.exists()


def test_a_held_claim_is_renewed_and_an_expired_one_taken_over_by_one_claimant(tmp_path):
    path = tmp_path / "work.claim"
    with Claim(path, lease_s=0.4) as first:
        assert first.held
        os.utime(path, (time.time() - 10, time.time() - 10))
        time.sleep(0.3)                                # the renewer touches the file every lease/4
        assert time.time() - path.stat().st_mtime < 0.3
        assert not Claim(path, lease_s=0.4).acquire()  # alive: left alone
    assert not path.exists()
    path.write_text("{}")                              # a claim whose process died ...
    os.utime(path, (time.time() - 10, time.time() - 10))
    takers = [Claim(path, lease_s=1) for _ in range(2)]
    won = [c.acquire() for c in takers]
    assert won == [True, False] and takers[0].took_over
    takers[0].release()


def test_release_leaves_a_claim_that_is_no_longer_ours(tmp_path):
    path = tmp_path / "work.claim"
    mine = Claim(path, lease_s=60)
    assert mine.acquire()
    path.unlink()
    other = Claim(path, lease_s=60)
    assert other.acquire()                             # someone took it over meanwhile
    mine.release()
    assert path.exists() and other.owner()["token"] == other.token
    other.release()
    with pytest.raises(ValueError, match="lease_s must be > 0"):
        Claim(path, lease_s=0)
