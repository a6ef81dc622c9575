"""A client that talks to the API the way the original service's minimal client does: the same
requests, reading the same fields, with a text progress bar. Only the URL and the payload differ.

It pings, submits, polls every second (redrawing `Progress: [###---] NN%` from `progress.percent`
whenever the whole percent changes while the status is PROGRESS) and prints the download URL.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import requests

API_URL = os.environ.get("API_URL", "http://127.0.0.1:8000")

PAYLOAD: dict[str, Any] = {
    "workflow_id": "emulator_sampler",
    "params": {"steps": 10, "seconds_per_step": 0.4},
}

BAR_LENGTH = 40


def ping(session: requests.Session) -> bool:
    print(f"Pinging {API_URL}...")
    try:
        session.get(f"{API_URL}/ping", timeout=5).raise_for_status()
    except requests.exceptions.RequestException as err:
        print(f"Server is offline or unreachable: {err}")
        return False
    print("Server is online.")
    return True


def generate_and_wait(session: requests.Session, payload: dict[str, Any]) -> dict[str, Any] | None:
    params = payload.get("params", {})
    print(f"  Model: {params.get('model', 'N/A')}")
    print(f"  Steps: {params.get('steps', 'N/A')}")
    print(f'  Prompt: "{params.get("prompt", "")[:80]}..."')
    began = time.time()
    answer = session.post(f"{API_URL}/generate", json=payload, timeout=10)
    if not answer.ok:
        print(f"Error: Failed to submit task (Status: {answer.status_code})")
        print(f"Server message: {answer.json().get('detail', answer.text)}")
        return None
    task_id = answer.json()["task_id"]
    print(f"Task submitted with ID: {task_id}")
    shown = -1.0
    while True:
        polled = session.get(f"{API_URL}/tasks/{task_id}", timeout=5)
        polled.raise_for_status()
        task: dict[str, Any] = polled.json()
        status = task.get("status")
        if status in ("SUCCESS", "FAILURE"):
            sys.stdout.write("\r" + " " * 80 + "\r")
            print(f"Task finished in {time.time() - began:.2f} seconds.")
            return task
        if status == "PROGRESS":
            percent = task.get("progress", {}).get("percent", 0)
            if int(percent) != int(shown):
                filled = int(BAR_LENGTH * percent / 100)
                bar = "█" * filled + "-" * (BAR_LENGTH - filled)
                sys.stdout.write(f"\rProgress: [{bar}] {percent:.0f}%")
                sys.stdout.flush()
                shown = percent
        elif status == "PENDING":
            sys.stdout.write("\rTask is waiting in queue...")
            sys.stdout.flush()
        time.sleep(1)


def main() -> int:
    with requests.Session() as session:
        if not ping(session):
            return 1
        task = generate_and_wait(session, PAYLOAD)
    if task and task.get("status") == "SUCCESS":
        print(f"Download URL: {task['result']['download_url']}")
    elif task:
        print(f"Failure Details: {task.get('result', 'No details')}")
    else:
        print("Task execution failed or was interrupted.")
    print("Client finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
