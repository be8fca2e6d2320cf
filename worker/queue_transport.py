"""The embedded default's queue: kombu's filesystem transport, with each message written whole
before a consumer can see it. kombu writes a message file in place, under its final name, while
a consumer moves and reads any file of that name without taking the writer's lock: a worker that
polls at that instant reads an empty message and dies of the JSON error (seen in the test
suite). Here the message is written under a name consumers skip, then renamed into place."""

import os
import time
import uuid

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

PARTIAL = ".partial"  # a consumer takes only names ending in ``<queue>.msg``


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:
        """Put ``payload`` onto ``queue``: written in full, then renamed to the name kombu reads."""
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's name: time order
        final = os.path.join(self.data_folder_out, name)
        try:
            with open(final + PARTIAL, "wb") as message:
                message.write(str_to_bytes(dumps(payload)))
            os.replace(final + PARTIAL, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
