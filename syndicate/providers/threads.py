"""Threads (Meta): a text post in two steps, as the Threads API requires.

1. ``POST /v1.0/{user_id}/threads`` with ``media_type=TEXT`` and ``text`` creates a media
   container (and ``link_attachment``: the post's URL, for the link preview, unless the payload
   has one or option ``link_attachment = false``);
2. ``GET /v1.0/{container_id}?fields=status,error_message`` until ``FINISHED``, for at most
   ``publish_wait`` seconds (default 30): ``ERROR``/``EXPIRED`` -> Permanent with Meta's
   message; still ``IN_PROGRESS`` at the bound -> Retryable (nothing is public yet);
3. ``POST /v1.0/{user_id}/threads_publish?creation_id=<container>`` publishes it and answers the
   post's id. Only this step can leave the outcome unknown; a lost answer before it just
   leaves an unused container behind, so it is Retryable.

Exactly once: the container id is saved in the ledger (``Job.remember``) before publishing, and
a passing error or 5xx on publish is OutcomeUnknown (Meta has published on such answers, see
``facebook.py``). The next attempt never creates a second container: ``lookup`` (asked by the
engine first) reads the saved container's status, as Meta's troubleshooting guide says to ("If
threads_publish does not return the published media ID, query GET /{threads-container-id}"):
``PUBLISHED`` means it is out (its media id is read from ``GET /{user}/threads``, matched on the
text); ``FINISHED`` means publish *that* container again; ``ERROR``/``EXPIRED`` (containers
expire after 24 hours) means make a new one.

Images (option ``media = "image"``): the container is an IMAGE one (``media_type=IMAGE``,
``image_url``, ``text``, ``alt_text``) instead of TEXT. Threads fetches the image itself from
``image_url``, so it is checked first by the same rule as every image upload (the site's own
hosts, no redirects) and against Threads' limits (JPEG or PNG, at most 8 MB; it cannot be
re-encoded, since Threads reads the site's copy). When the check, the container or its
processing fails (status ERROR), a TEXT container with the link card is made instead; the
saved container id keeps a post from being published twice either way.

The public URL is read afterwards (``GET /{id}?fields=permalink``), best-effort.

Options: ``token_env`` (a long-lived Threads user access token with ``threads_basic`` and
``threads_content_publish``; 60 days, refreshable with ``th_refresh_token``), ``user_id``
(default ``me``), ``version`` (default v1.0), ``publish_wait``, ``poll_interval`` (default 1 s),
``link_attachment``, ``api_base`` (default https://graph.threads.net), ``timeout``.
Errors use the Graph API shape and codes (see ``facebook.py``). Text limit: 500 characters.
The token goes in ``Authorization: Bearer``, which Meta's Graph front end reads, though the
Threads reference lists only the ``access_token`` parameter (review finding T3): should the
host ever read no token from the header, Graph's 104/2500 answer says so, and ``check()``
(which sends the same header) reports it before any post is attempted.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from syndicate.providers.base import Job, OutcomeUnknown, Permanent, ProviderError, Retryable, SendResult
from syndicate.providers.facebook import GraphApiProvider
from syndicate.providers.http import IMAGE_ALT_HINT, IMAGE_HINT, body_of

CONTAINER_NOTE = "threads_container"
MAX_POLL_INTERVAL = 8.0
# developers.facebook.com/docs/threads/overview#image-specifications: JPEG or PNG, 8 MB at most
IMAGE_MAX_BYTES = 8 * 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png")
ALT_TEXT_MAX = 1000


class ThreadsProvider(GraphApiProvider):
    name = "threads"
    service = "Threads"
    default_api_base = "https://graph.threads.net"
    deduplicates = False
    looks_up = True
    dedup_window = timedelta(hours=23)  # an unpublished container expires after 24 hours
    default_rate = "250/24h"  # published posts per profile per 24 hours
    token_option = "token_env"
    token_what = "Threads access token"

    @property
    def version(self) -> str:
        return str(self.options.get("version") or "v1.0")

    @property
    def user_id(self) -> str:
        return quote(str(self.options.get("user_id") or "me"), safe="")

    def _path(self, *parts: str) -> str:
        return "/" + "/".join([self.version, *parts])

    def send(self, job: Job) -> SendResult:
        body = self._body(job)
        container = job.notes.get(CONTAINER_NOTE)
        if container:  # an earlier attempt made one: publish that one, never a second
            status = self._container_status(container)[0]
            if status == "PUBLISHED":
                return self._published(job, container)
            if status in ("ERROR", "EXPIRED"):
                container = None
        if not container and self.options.get("media") == "image" and self.has_image(job):
            container = self._image_container(job, body)
        if not container:
            container = self._create_container(body)
            job.remember(CONTAINER_NOTE, container)  # in the ledger before anything is published
        self._wait_until_finished(container)
        resp = self.request("POST", self._path(self.user_id, "threads_publish"), params={"creation_id": container},
                            what="publishing the post")
        media_id = self.json_of(resp).get("id")
        media_id = str(media_id) if media_id else None
        return SendResult(ref=media_id, url=self._permalink(media_id), details={"container": container})

    def lookup(self, job: Job) -> SendResult | None:
        container = job.notes.get(CONTAINER_NOTE)
        if not container:
            return None  # no container was made, so nothing can have been published
        if self._container_status(container)[0] == "PUBLISHED":
            return self._published(job, container)
        return None  # send() publishes the same container (or a new one if it expired)

    def _body(self, job: Job) -> dict:
        body = {k: v for k, v in body_of(job.payload).items() if v is not None}
        body.setdefault("media_type", "TEXT")
        if (body["media_type"] == "TEXT" and "link_attachment" not in body and job.post_url
                and self.options.get("link_attachment", True)):
            body["link_attachment"] = job.post_url
        return body

    def _image_container(self, job: Job, body: dict) -> str | None:
        """A FINISHED IMAGE container of the post (saved in the ledger), or None: the post then
        goes out as text with its link card."""
        url = job.payload.get(IMAGE_HINT)
        fetched = self.fetch_site_image(url, IMAGE_MAX_BYTES)
        if fetched is None or fetched[1] not in IMAGE_TYPES:
            self.media_fallback(job, "no JPEG or PNG of at most 8 MB on the site's own host")
            return None
        image = {"media_type": "IMAGE", "image_url": url, "text": body.get("text") or ""}
        alt = str(job.payload.get(IMAGE_ALT_HINT) or "").strip()
        if alt:
            image["alt_text"] = alt[:ALT_TEXT_MAX]
        try:
            container = self._create_container(image)
        except (Permanent, Retryable) as exc:  # no container, nothing published: the text post instead
            self.media_fallback(job, str(exc))
            return None
        job.remember(CONTAINER_NOTE, container)  # in the ledger before anything is published
        try:
            self._wait_until_finished(container)
        except Permanent as exc:  # the container failed (Threads could not use the image)
            self.media_fallback(job, str(exc))
            return None
        return container

    def _published(self, job: Job, container: str) -> SendResult:
        """The post a published CONTAINER became: the profile's thread with our text."""
        since = (job.first_attempt_at or datetime.now(UTC)) - timedelta(minutes=5)
        resp = self.request("GET", self._path(self.user_id, "threads"),
                            params={"fields": "id,text,permalink,timestamp", "since": str(int(since.timestamp())),
                                    "limit": "100"}, what="finding the published post")
        text = (self._body(job).get("text") or "").strip()
        for post in self.json_of(resp).get("data") or []:
            if isinstance(post, dict) and (post.get("text") or "").strip() == text and post.get("id"):
                return SendResult(ref=str(post["id"]), url=post.get("permalink"),
                                  details={"container": container, "found_by": "lookup"})
        # Published for certain (Meta says so); only its id is not listed yet.
        return SendResult(ref=None, details={"container": container, "found_by": "lookup"})

    def _container_status(self, container: str) -> tuple[str, dict]:
        resp = self.request("GET", self._path(quote(container, safe="")),
                            params={"fields": "status,error_message"}, what="reading the container status")
        info = self.json_of(resp)
        return str(info.get("status") or "").upper(), info

    def _create_container(self, body: dict) -> str:
        try:
            resp = self.request("POST", self._path(self.user_id, "threads"), data=body,
                                what="creating the media container")
        except OutcomeUnknown as exc:  # a container is not a post: nothing public happened
            raise Retryable(str(exc), status=exc.status) from None
        container = self.json_of(resp).get("id")
        if not container:
            raise Retryable("Threads: the media container was created without an id")
        return str(container)

    def _wait_until_finished(self, container: str) -> None:
        wait = float(self.options.get("publish_wait", 30))
        # Doubling from poll_interval: TEXT is ready at once; media can take minutes, and Meta
        # asks for no more than one read a minute then (Threads troubleshooting guide).
        interval = max(0.05, float(self.options.get("poll_interval", 1)))
        deadline = time.monotonic() + wait
        while True:
            status, info = self._container_status(container)
            if status in ("FINISHED", "PUBLISHED"):
                return
            if status in ("ERROR", "EXPIRED"):
                reason = info.get("error_message") or status.lower()
                raise Permanent(self._message(f"the media container failed: {reason}"))
            if time.monotonic() + interval > deadline:
                raise Retryable(self._message(f"the media container is still {status or 'unknown'} "
                                              f"after {wait:g} s; nothing was published"))
            time.sleep(interval)
            interval = min(interval * 2, MAX_POLL_INTERVAL)

    def _permalink(self, media_id: str | None) -> str | None:
        if not media_id:
            return None
        try:
            resp = self.request("GET", self._path(quote(media_id, safe="")), params={"fields": "permalink"},
                                what="reading the permalink")
        except ProviderError:
            return None
        link = self.json_of(resp).get("permalink")
        return str(link) if link else None

    def check(self) -> str:
        me = self.json_of(self.request("GET", self._path(self.user_id), params={"fields": "id,username"},
                                       what="reading the profile"))
        return f"Threads @{me.get('username', '?')} ({me.get('id', '?')}), API {self.version}"
