"""Live progress: the card and log line carry the count, the ETA and the watch's status."""

from __future__ import annotations

import logging
import threading

from prefect import flow

from flows.progress import StageProgress, text_bar
from foundation.progress import LogTail, format_duration


class Status:
    """A watch whose status is fixed."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poll(self) -> str:
        return "loss 0.5"


def test_card_and_line_carry_eta_and_status(prefect_server):
    now = [100.0]

    @flow
    def stage() -> tuple[str, str]:
        progress = StageProgress("generator", watch=Status(), clock=lambda: now[0])
        progress(10, 110)  # a resumed run: the rate counts from here
        now[0] += 20.0
        progress(20, 110)  # 10 steps in 20 s, 90 to go: 180 s
        return progress.line(20, 110), progress.card(20, 110)

    line, card = stage()
    assert line == "generator: 20/110 steps (18%), ETA 3 min 00 s, loss 0.5"
    assert card == "`[##--------]` 18%, ETA 3 min 00 s, 20/110 steps, loss 0.5"


def test_durations_and_bars():
    assert [format_duration(s) for s in (4.4, 65, 7260)] == ["4 s", "1 min 05 s", "2 h 01 min"]
    assert (text_bar(0), text_bar(100)) == ("[----------]", "[##########]")


def test_log_tail_keeps_only_its_own_threads_loss():
    logger = logging.getLogger("tests.flows.tail")
    tail = LogTail("tests.flows.tail")
    tail.start()
    try:
        logger.info("step %d/%d loss %.4f", 50, 75, 4.1234)
        other = threading.Thread(target=logger.info, args=("step 60/75 loss 9.9",))
        other.start()
        other.join()
    finally:
        tail.stop()
    assert tail.poll() == "loss 4.1234"
    assert logger.level == logging.NOTSET, "the logger's level is restored"


def test_a_failed_stage_says_so_on_its_card(prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    @flow
    def stage() -> None:
        with StageProgress("masks") as progress:
            progress(3, 10)
            raise ValueError("provided masks: 0001.png is (10, 10)\nsecond line")

    state = stage(return_state=True)
    assert state.is_failed()
    runs = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
    with get_client(sync_client=True) as client:
        cards = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=runs))
    (card,) = [artifact for artifact in cards if artifact.type == "progress"]
    assert card.key == "augment-market-masks"
    assert card.data == 30.0
    assert card.description == (
        "`[###-------]` failed at 30%: ValueError: provided masks: 0001.png is (10, 10)"
    )
