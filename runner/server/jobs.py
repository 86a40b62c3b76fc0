"""``/api/jobs``: the queue and history as jobs, for the queue sidebar of frontend 1.58
(shape in comfyui-frontend-routes.md §2a)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Optional

from aiohttp import web

from .app import json_error, query_int, read_json
from .store import HistoryRecord, QueueItem, job_status

if TYPE_CHECKING:
    from .app import ServerContext

ACTIVE = ("pending", "in_progress")
FINISHED = ("completed", "failed", "cancelled")
MEDIA_KEYS = {"images": "images", "video": "video", "videos": "video", "audio": "audio", "gifs": "video"}


def _workflow_id(extra_data: dict) -> Optional[str]:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow")
    return workflow.get("id") if isinstance(workflow, dict) else None


def _queued_job(item: QueueItem, status: str) -> dict:
    return {
        "id": item.prompt_id,
        "status": status,
        "priority": item.number,
        "create_time": item.created_ms,
        "outputs_count": None,
        "previewable_outputs_count": None,
        "workflow_id": _workflow_id(item.extra_data),
    }


def _finished_job(record: HistoryRecord) -> dict:
    entry = record.entry
    outputs = [
        {**item, "nodeId": node_id, "mediaType": MEDIA_KEYS.get(key, key)}
        for node_id, ui in entry["outputs"].items()
        for key, items in ui.items()
        if isinstance(items, list)
        for item in items
        if isinstance(item, dict) and "filename" in item
    ]
    previewable = [o for o in outputs if o["mediaType"] in ("images", "video", "audio")]
    job = {
        "id": record.prompt_id,
        "status": job_status(entry),
        "priority": entry["prompt"][0],
        "create_time": record.created_ms,
        "execution_start_time": record.start_ms,
        "execution_end_time": record.end_ms,
        "outputs_count": len(outputs),
        "previewable_outputs_count": len(previewable),
        "workflow_id": _workflow_id(entry["prompt"][3]),
    }
    if previewable:
        first = previewable[0]
        job["preview_output"] = {k: first[k] for k in ("filename", "subfolder", "type", "nodeId", "mediaType") if k in first}
    errors = [data for event, data in entry["status"]["messages"] if event == "execution_error"]
    if errors:
        error = errors[-1]
        job["execution_error"] = {k: error.get(k) for k in ("node_id", "node_type", "exception_message", "exception_type", "traceback")}
    return job


def add_routes(routes: web.RouteTableDef, context: "ServerContext") -> None:
    store, service = context.store, context.service

    def active_jobs(statuses: set[str]) -> list[dict]:
        out = []
        if "in_progress" in statuses:
            out += [_queued_job(item, "in_progress") for item in store.running()]
        if "pending" in statuses:
            out += [_queued_job(item, "pending") for item in store.pending()]
        return out

    @routes.get("/api/jobs")
    async def list_jobs(request: web.Request) -> web.Response:
        query = request.query
        statuses = {s.strip() for s in query.get("status", ",".join(ACTIVE + FINISHED)).split(",") if s.strip()}
        unknown = statuses - set(ACTIVE + FINISHED)
        if unknown:
            return json_error(400, "invalid_query", f"unknown status {sorted(unknown)}: use {', '.join(ACTIVE + FINISHED)}")
        limit = query_int(request, "limit", 100, minimum=0)
        offset = query_int(request, "offset", 0, minimum=0)
        newest_first = query.get("sort_order", "desc") != "asc"
        active = active_jobs(statuses)
        finished_statuses = sorted(statuses & set(FINISHED))
        records, finished_total = (
            store.finished_jobs(finished_statuses, min(offset + limit, 2**63 - 1), newest_first) if finished_statuses else ([], 0)
        )
        finished = [_finished_job(r) for r in records]
        # As the queue panel shows them: running, pending in run order, then finished ones.
        page = (active + finished)[offset:offset + limit]
        total = len(active) + finished_total
        return web.json_response({
            "jobs": page,
            "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total},
        })

    @routes.get("/api/jobs/{job_id}")
    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        record = store.history_get(job_id)
        if record is not None:
            return web.json_response({**_finished_job(record), "outputs": record.entry["outputs"],
                                      "workflow": (record.entry["prompt"][3].get("extra_pnginfo") or {}).get("workflow")},
                                     dumps=lambda v: json.dumps(v, default=str))
        for job in active_jobs(set(ACTIVE)):
            if job["id"] == job_id:
                return web.json_response(job)
        return json_error(404, "not_found", f"no job {job_id}")

    def cancel(job_id: str) -> bool:
        return bool(service.delete_pending([job_id])) or service.interrupt(job_id)

    @routes.post("/api/jobs/{job_id}/cancel")
    async def cancel_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        return web.json_response({"cancelled": [job_id] if cancel(job_id) else []})

    @routes.post("/api/jobs/cancel")
    async def cancel_jobs(request: web.Request) -> web.Response:
        body = await read_json(request)
        ids = body.get("job_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return json_error(400, "invalid_request", "job_ids must be a list of ids")
        return web.json_response({"cancelled": [i for i in ids if cancel(i)]})
