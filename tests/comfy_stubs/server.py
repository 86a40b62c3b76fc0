"""Stand-in for ComfyUI's server module: ``PromptServer.instance`` with its aiohttp app, route
table, prompt counter and a PromptQueue with ComfyUI's method names (contract §3.2, §4)."""

import threading

from aiohttp import web


class PromptQueue:
    def __init__(self, server):
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.queue = []
        self.currently_running = {}
        self.history = {}
        self.task_counter = 0

    def put(self, item):
        with self.mutex:
            self.queue.append(item)
            self.not_empty.notify()

    def get(self, timeout=None):
        with self.not_empty:
            while not self.queue:
                if not self.not_empty.wait(timeout):
                    return None
            item = self.queue.pop(0)
            self.task_counter += 1
            self.currently_running[self.task_counter] = item
            return item, self.task_counter

    def task_done(self, item_id, history_result, status):
        with self.mutex:
            prompt = self.currently_running.pop(item_id)
            self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, "status": status, **history_result}

    def get_current_queue(self):
        with self.mutex:
            return list(self.currently_running.values()), list(self.queue)

    def get_tasks_remaining(self):
        with self.mutex:
            return len(self.queue) + len(self.currently_running)

    def get_history(self, prompt_id=None, max_items=None, offset=-1, map_function=None):
        with self.mutex:
            if prompt_id is None:
                return dict(self.history)
            return {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}

    def delete_queue_item(self, function):
        with self.mutex:
            for index, item in enumerate(self.queue):
                if function(item):
                    self.queue.pop(index)
                    return True
            return False


class PromptServer:
    instance = None

    def __init__(self, loop=None):
        PromptServer.instance = self
        self.loop = loop
        self.routes = web.RouteTableDef()
        self.app = web.Application()
        self.number = 0
        self.prompt_queue = PromptQueue(self)
