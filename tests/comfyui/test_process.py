"""ComfyUIProcess and ComfyUIAttached against the emulator started as a real ComfyUI install."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.errors import ComfyUIStartError, ComfyUIUnavailable
from activities.comfyui.process import ComfyUIAttached, ComfyUIProcess, resolve_python
from activities.workers.settings import GpuWorkerProcessSettings
from tests.support.emulator import EMULATOR_DIR, emulator_process
from tests.support.graphs import empty_image


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def _system_argv(url: str) -> list[str]:
    async with ComfyUIClient(url) as client:
        return (await client.system_stats())["system"]["argv"]


async def test_start_gives_comfyui_its_own_dirs_port_and_flags(start_emulator) -> None:
    emulator = await start_emulator(extra_args=["--preview-method", "auto"], cuda_device=3)
    process = emulator.process
    argv = await _system_argv(emulator.url)
    assert process.url == f"http://127.0.0.1:{process.port}"
    for flag, value in (
        ("--listen", "127.0.0.1"),
        ("--port", str(process.port)),
        ("--output-directory", str(emulator.work_dir / "output")),
        ("--input-directory", str(emulator.work_dir / "input")),
        ("--temp-directory", str(emulator.work_dir)),
        ("--user-directory", str(emulator.work_dir / "user")),
        ("--cuda-device", "3"),
        ("--preview-method", "auto"),
    ):
        assert argv[argv.index(flag) + 1] == value
    assert "--disable-auto-launch" in argv and "--cpu" in argv
    for directory in ("output", "input", "user", "temp"):
        assert (emulator.work_dir / directory).is_dir()
    assert process.healthy


async def test_start_fails_with_the_last_log_lines_when_comfyui_exits(start_emulator) -> None:
    with pytest.raises(ComfyUIStartError) as caught:
        await start_emulator(extra_args=["--no-such-flag"])
    # ComfyUI's argparse rejects unknown flags with exit status 2.
    assert "exited with code 2" in str(caught.value)
    assert any("unrecognized arguments: --no-such-flag" in line for line in caught.value.last_lines)


async def test_start_times_out_when_the_port_never_opens(start_emulator) -> None:
    with pytest.raises(ComfyUIStartError) as caught:
        await start_emulator(
            extra_args=["--emulator-fault", "refuse_connections=true"], start_timeout=1.5
        )
    assert "not ready within 1.5 s" in str(caught.value)


async def test_log_lines_are_prefixed_and_kept(start_emulator, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="activities.comfyui.process"):
        emulator = await start_emulator(name="comfyui:gpu7")
    assert any(line.startswith("To see the GUI go to:") for line in emulator.process.last_lines)
    assert any(
        r.getMessage().startswith("[comfyui:gpu7] To see the GUI go to:") for r in caplog.records
    )


async def test_stop_leaves_no_process_in_the_group(start_emulator) -> None:
    emulator = await start_emulator()
    pgid = emulator.process.pid
    assert pgid is not None and os.getpgid(pgid) == pgid  # its own process group
    await emulator.process.stop(grace=5.0)
    assert not _group_alive(pgid)
    assert not emulator.process.healthy
    async with ComfyUIClient(emulator.url) as client:
        assert await client.ready() is False


async def test_stop_sends_sigint_first_so_comfyui_cleans_its_temp_dir(start_emulator) -> None:
    emulator = await start_emulator()
    marker = emulator.temp_dir / "leftover.png"
    marker.write_bytes(b"x")
    await emulator.process.stop(grace=5.0)
    # Only a clean SIGINT shutdown removes the temp dir (§1.5); SIGKILL would leave it.
    assert not emulator.temp_dir.exists()
    assert emulator.process.last_exit_code == 0


async def test_supervise_restarts_comfyui_after_it_dies(start_emulator) -> None:
    emulator = await start_emulator(restart_backoff=0.1)
    process = emulator.process
    supervisor = asyncio.create_task(process.supervise())
    try:
        first_pid = process.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait_unhealthy(), 5.0)
        await process.wait_healthy(timeout=15.0)
        assert process.pid != first_pid and process.restarts == 1
        async with ComfyUIClient(process.url) as client:
            assert await client.ready()
    finally:
        supervisor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervisor
    assert not process.running


async def test_a_port_another_process_took_after_the_probe_is_replaced_once(
    tmp_path: Path,
) -> None:
    process = emulator_process(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process.port = taken.getsockname()[1]  # as if taken between free_port() and the bind
        try:
            await process.start()
            assert process.healthy and process.port != taken.getsockname()[1]
        finally:
            await process.stop()


async def test_python_defaults_to_the_install_venv(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("COMFYUI_PYTHON", raising=False)
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    assert resolve_python(tmp_path, GpuWorkerProcessSettings().comfyui_python) == str(venv_python)
    monkeypatch.setenv("COMFYUI_PYTHON", "/opt/comfy/python")
    chosen = GpuWorkerProcessSettings().comfyui_python
    assert resolve_python(tmp_path, chosen) == "/opt/comfy/python"
    assert resolve_python(tmp_path, "/explicit/python") == "/explicit/python"


async def test_attached_mode_follows_the_health_of_a_running_comfyui(start_emulator) -> None:
    emulator = await start_emulator()
    attached = ComfyUIAttached(emulator.url, start_timeout=5.0, poll_interval=0.05)
    await attached.start()
    assert attached.healthy
    watcher = asyncio.create_task(attached.supervise())
    try:
        await emulator.process.stop(grace=5.0)
        await asyncio.wait_for(attached.wait_unhealthy(), 5.0)
        assert not attached.healthy
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_attached_start_fails_when_nothing_answers() -> None:
    from activities.comfyui.process import free_port

    attached = ComfyUIAttached(
        f"http://127.0.0.1:{free_port()}", start_timeout=0.3, poll_interval=0.05
    )
    with pytest.raises(ComfyUIUnavailable):
        await attached.start()


async def test_wait_healthy_times_out_for_a_process_never_started(tmp_path: Path) -> None:
    process = ComfyUIProcess(EMULATOR_DIR, work_dir=tmp_path, python=sys.executable)
    with pytest.raises(ComfyUIUnavailable):
        await process.wait_healthy(timeout=0.05)


async def test_emulator_rejects_a_user_directory_that_does_not_exist(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EMULATOR_DIR / "main.py"),
        "--user-directory",
        str(tmp_path / "missing"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 2 and b"is not a valid directory" in stderr


async def test_cuda_device_flag_pins_the_process(start_emulator) -> None:
    emulator = await start_emulator(cuda_device=1)
    async with httpx.AsyncClient(trust_env=False) as http:
        stats = (await http.get(f"{emulator.url}/system_stats")).json()
    assert stats["system"]["cuda_visible_devices"] == "1"


async def test_supervise_kills_and_restarts_a_frozen_comfyui(start_emulator) -> None:
    emulator = await start_emulator(restart_backoff=0.1, health_interval=0.2, health_failures=2)
    process = emulator.process
    supervisor = asyncio.create_task(process.supervise())
    try:
        frozen_pid = process.pid
        await emulator.set_faults(freeze_on_node="EmptyImage")
        async with ComfyUIClient(emulator.url) as client:
            await client.submit(
                {
                    "1": empty_image(8, 8, color=5),
                    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
                },
                prompt_id="freezes",
            )
        await asyncio.wait_for(process.wait_unhealthy(), 10.0)
        await process.wait_healthy(timeout=15.0)
        assert process.pid != frozen_pid and process.restarts == 1
        assert any("freezing on EmptyImage" in line for line in process.last_lines)
    finally:
        supervisor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervisor


async def _run_emulator(*args: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EMULATOR_DIR / "main.py"), *args, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, stderr


async def test_emulator_accepts_comfyui_flags_like_comfyui(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    code, stderr = await _run_emulator(
        "--quick-test-for-ci",  # loads everything, exits before binding (§1.4)
        "--listen",
        "127.0.0.1",
        "--port",
        "1",
        "--output-directory",
        str(tmp_path / "out"),
        "--input-directory",
        str(tmp_path / "in"),
        "--temp-directory",
        str(tmp_path),
        "--user-directory",
        str(tmp_path / "user"),
        "--cpu",
        "--cuda-device",
        "0",
        "--disable-auto-launch",
        "--preview-method",
        "taesd",
        "--cache-none",
        "--disable-metadata",
        "--disable-all-custom-nodes",
        "--disable-api-nodes",
        "--verbose",
        "WARNING",
        "--database-url",
        "sqlite:///:memory:",
        "--dont-print-server",
    )
    assert code == 0, stderr.decode()


async def test_emulator_rejects_conflicting_memory_flags_like_argparse(tmp_path: Path) -> None:
    # --cpu and --lowvram share one mutually exclusive group in ComfyUI (§1.2).
    code, stderr = await _run_emulator("--quick-test-for-ci", "--cpu", "--lowvram")
    assert code == 2 and b"not allowed with argument" in stderr


_STOP_WITH_SIGINT_IGNORED = """
import asyncio, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from activities.comfyui.process import ComfyUIProcess

async def main():
    process = ComfyUIProcess(Path(sys.argv[2]), work_dir=Path(sys.argv[3]), python=sys.executable,
                             extra_args=["--cpu"], start_timeout=30)
    await process.start()
    began = time.monotonic()
    await process.stop(grace=5.0)
    print(process.last_exit_code, round(time.monotonic() - began, 2))

signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job of a non-interactive shell
asyncio.run(main())
"""


async def test_stop_is_clean_even_when_our_own_sigint_is_ignored(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STOP_WITH_SIGINT_IGNORED,
        str(repo),
        str(EMULATOR_DIR),
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    exit_code, seconds = stdout.decode().split()
    # ComfyUI got a SIGINT it could act on: a clean exit well before the SIGKILL grace.
    assert exit_code == "0" and float(seconds) < 5.0
