"""A client that talks to the API the way the original service's rich terminal client does: the
same requests, in the same order, reading the same fields. Only the URL and the payload differ.

It pings, shows the LoRA table, prints the job, submits it, polls every second with a rich
progress bar fed by `progress.percent` while the status is PROGRESS, and prints the download URL.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import requests
from rich.align import Align
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

API_URL = os.environ.get("API_URL", "http://127.0.0.1:8000")

PAYLOAD: dict[str, Any] = {
    "workflow_id": "emulator_sampler",
    "params": {"steps": 10, "seconds_per_step": 0.4, "width": 48, "height": 32},
}

console = Console(highlight=False)


def ping(session: requests.Session) -> bool:
    try:
        answer = session.get(f"{API_URL}/ping", timeout=5)
    except requests.exceptions.RequestException:
        console.print("FAIL Server is offline or unreachable.")
        return False
    if answer.status_code == 200 and answer.json().get("message") == "pong":
        console.print("OK Server is online.")
        return True
    console.print(f"FAIL Server responded with status {answer.status_code}.")
    return False


def show_loras(session: requests.Session) -> None:
    console.rule("Available LoRAs")
    try:
        answer = session.get(f"{API_URL}/loras", timeout=10)
        answer.raise_for_status()
    except requests.exceptions.RequestException as err:
        console.print(f"Could not fetch LoRA list: {err}")
        return
    loras = answer.json()
    if not loras:
        console.print("No LoRAs defined in the manifest on the server.")
        return
    table = Table(box=None, expand=True)
    for column in ("Name", "Description", "Triggers"):
        table.add_column(column)
    for lora in loras:
        triggers = [lora.get("prefix"), lora.get("suffix") and f"..., {lora.get('suffix')}"]
        table.add_row(lora["name"], lora["description"], "".join(t for t in triggers if t))
    console.print(table)


def show_job(params: dict[str, Any]) -> None:
    text = Text()
    for label, key in (("Model", "model"), ("Steps", "steps"), ("Seed", "seed")):
        text.append(f"{label}: {params.get(key, 'N/A')}\n")
    lora = params.get("lora")
    if lora and lora.lower() != "none":
        text.append(f"LoRA: {lora} (Strength: {params.get('lora_strength', 'N/A')})\n")
    text.append(f'Prompt: "{params.get("prompt", "")}"')
    console.print(Align.center(Panel(text, title="Generation Task", width=100)))


def generate_and_wait(session: requests.Session, payload: dict[str, Any]) -> dict[str, Any] | None:
    show_job(payload.get("params", {}))
    began = time.time()
    answer = session.post(f"{API_URL}/generate", json=payload, timeout=10)
    if not answer.ok:
        console.print(f"CRITICAL: Failed to submit task (Status: {answer.status_code})")
        console.print(f"Server message: {answer.json().get('detail', answer.text)}")
        return None
    task_id = answer.json()["task_id"]
    console.print(f"Task submitted with ID: {task_id}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("Waiting...", total=100)
        while True:
            polled = session.get(f"{API_URL}/tasks/{task_id}", timeout=5)
            polled.raise_for_status()
            task: dict[str, Any] = polled.json()
            status = task.get("status")
            if status in ("SUCCESS", "FAILURE"):
                progress.update(bar, completed=100, description="Finished")
                break
            if status == "PROGRESS":
                percent = task.get("progress", {}).get("percent", 0)
                progress.update(bar, completed=percent, description="Generating")
            elif status == "PENDING":
                progress.update(bar, description="In queue")
            time.sleep(1)
    mark = "[OK]" if task.get("status") == "SUCCESS" else "[FAIL]"
    console.print(f"{mark} Task finished in {time.time() - began:.2f} seconds.")
    return task


def main() -> int:
    with requests.Session() as session:
        if not ping(session):
            return 1
        show_loras(session)
        console.print()
        task = generate_and_wait(session, PAYLOAD)
    if task and task.get("status") == "SUCCESS":
        console.print(f"Download URL: {task['result']['download_url']}", soft_wrap=True)
    elif task:
        console.print(f"Details: {task.get('result', 'No details')}")
    console.print("Client finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
