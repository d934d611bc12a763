"""Speech alerts renders itself, for languages the voice provider cannot speak
(Albanian: Twilio documents no voice for it, PITFALLS "Browsers, voice").

espeak-ng (Debian's `espeak-ng`, installed by deploy/local/stack.sh) writes a WAV of the
text to stdout. Renderings are kept in a small in-process cache: during a fan-out many
calls play the same alert. Without espeak-ng, `available()` is false and calls speak
English with `<Say>` instead (logged once per process).
"""

from __future__ import annotations

import asyncio
import shutil
from collections import OrderedDict

from services.alerts.voice_script import ESPEAK_VOICES
from shared.observability import get_logger

log = get_logger(__name__)

#: renderings kept (a WAV of one prompt is some 100-300 kB)
_CACHE_SIZE = 64
#: a rendering taking longer is abandoned (the provider would have given up waiting)
_RENDER_TIMEOUT_S = 10.0


class SpeechUnavailable(Exception):
    """espeak-ng is missing or failed: the caller falls back to `<Say>` in English."""


class Speech:
    def __init__(self, program: str) -> None:
        self._path = shutil.which(program)
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._warned = False

    def available(self) -> bool:
        if self._path is None and not self._warned:
            self._warned = True
            log.warning(
                "espeak-ng not found: calls in languages without a provider voice (Albanian) "
                "speak English; install espeak-ng (deploy/local/stack.sh does)"
            )
        return self._path is not None

    async def wav(self, language: str, text: str) -> bytes:
        key = (language, text)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._path is None:
            raise SpeechUnavailable("espeak-ng not found")
        process = await asyncio.create_subprocess_exec(
            self._path,
            "-v",
            ESPEAK_VOICES.get(language, "en"),
            "-s",
            "150",
            "--stdout",
            # the text on stdin, never as an argument: a title starting with "-" would
            # read as an option
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            audio, error = await asyncio.wait_for(
                process.communicate(text.encode()), timeout=_RENDER_TIMEOUT_S
            )
        except TimeoutError as exc:
            process.kill()
            raise SpeechUnavailable("espeak-ng took too long") from exc
        if process.returncode != 0 or not audio.startswith(b"RIFF"):
            raise SpeechUnavailable(f"espeak-ng failed: {error.decode(errors='replace')[:200]}")
        self._cache[key] = audio
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return audio
