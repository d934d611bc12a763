"""The console's browser-test harness.

`platform` (one per test module): members, alerts, dispatch and the console as real
processes (`python -m services.<name>`), as `make up` starts them, on this module's own
topics, PostgreSQL schemas and Redis prefixes, with alerts sending SMS through the local
Twilio-compatible server of the alerts tests. A module gets a fresh, empty platform, so
counts a test asserts (reach preview, board rows) are its own; the tests of one module
share it, so they use distinct section codes or accept what earlier tests made.

`browser` (one per session) is Debian's Chromium driven by Playwright; `page` is a fresh
context per test (1280 × 800, or `@pytest.mark.viewport(360, 640)`), `new_page(...)` more
of them (two coordinators at once, another language). `screenshot(page, name)` saves
docs/screenshots/<name>.png; `axe_check(page)` fails on serious or critical axe-core
violations.

Browser tests are plain (sync) test functions: Playwright's sync API refuses to run
inside an event loop.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from twilio.request_validator import RequestValidator

from shared.events.provision import provision
from shared.events.topics import all_topics
from tests.alerts.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Sms
from tests.support.infra import REPO, Infra
from tests.support.processes import ServiceProcess, free_port, run_migrations, start_service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root (CI, containers) cannot use Chromium's sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO / "docs" / "screenshots"
DEFAULT_VIEWPORT = (1280, 800)

ADMIN_EMAIL = "admin@console-tests.example.org"
ADMIN_PASSWORD = "console tests admin password"
#: the password of every account the tests create through `platform.api.account`
STAFF_PASSWORD = "console tests staff password"
#: the number members text (Twilio's "To" of an inbound SMS)
MUSTER_NUMBER = "+15005550006"

#: where Fier's centre is (the tests' default area)
FIER = (40.7239, 19.5561)
SECTIONS: dict[str, dict[str, str]] = {
    "AL": {"name": "Albania", "country": "AL", "timezone": "Europe/Tirane", "language": "sq"},
    "IT": {"name": "Italia", "country": "IT", "timezone": "Europe/Rome", "language": "it"},
    "FR": {"name": "France", "country": "FR", "timezone": "Europe/Paris", "language": "fr"},
}
WAIT_S = 30.0

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "viewport(width, height): the `page` fixture's viewport (default 1280x800)"
    )


def _in_thread(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in another thread, so a sync
    fixture never touches (or replaces) pytest-asyncio's loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


# --- the platform under test ----------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A member a test registered: what the API answered."""

    id: str
    phone: str
    version: int
    section: str
    body: dict[str, Any]


class StaffApi:
    """The public HTTP APIs as staff use them (what the console itself calls)."""

    def __init__(self, platform: ConsolePlatform) -> None:
        self._platform = platform
        self._tokens: dict[str, str] = {}
        self.members = httpx.Client(base_url=platform.members.url, timeout=30)
        self.alerts = httpx.Client(base_url=platform.alerts.url, timeout=30)
        self.dispatch = httpx.Client(base_url=platform.dispatch.url, timeout=30)

    def close(self) -> None:
        for client in (self.members, self.alerts, self.dispatch):
            client.close()

    # sign-in --------------------------------------------------------------------------

    def token(self, email: str, password: str = STAFF_PASSWORD) -> str:
        """A fresh bearer token for this account (members `POST /auth/token`)."""
        response = self.members.post("/auth/token", data={"username": email, "password": password})
        if response.status_code != 200:
            raise AssertionError(f"sign-in of {email}: {response.status_code} {response.text}")
        token = str(response.json()["access_token"])
        self._tokens[email] = token
        return token

    def bearer(self, email: str, password: str = STAFF_PASSWORD) -> dict[str, str]:
        """Authorization headers for this account (token cached per email)."""
        token = self._tokens.get(email) or self.token(email, password)
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.bearer(self._platform.admin_email, self._platform.admin_password)

    # set-up through the public APIs ------------------------------------------------

    def section(self, code: str, **fields: str) -> dict[str, Any]:
        """Create a section (AL, IT, FR have defaults); one that exists is kept."""
        body = {"code": code, **SECTIONS.get(code, {}), **fields}
        response = self.members.post("/sections", json=body, headers=self.admin)
        if response.status_code not in (201, 409):
            raise AssertionError(f"POST /sections {code}: {response.status_code} {response.text}")
        return body

    def account(
        self, email: str, role: str, sections: list[str], password: str = STAFF_PASSWORD
    ) -> str:
        """Create a staff account (its sections must exist); one that exists is kept."""
        body = {"email": email, "password": password, "role": role, "sections": sections}
        response = self.members.post("/accounts", json=body, headers=self.admin)
        if response.status_code not in (201, 409):
            raise AssertionError(f"POST /accounts {email}: {response.status_code} {response.text}")
        return email

    def member(self, staff: dict[str, str] | None = None, **fields: Any) -> Member:
        """Register a member (`POST /members`, as `staff` or the admin).

        Defaults make an eligible member: section AL, in Fier's centre, FIRST_AID valid
        until 2030, available, consenting, with a fresh phone number. `north_m` moves them
        north of `at` (default Fier) by that many metres.
        """
        north_m = float(fields.pop("north_m", 0.0))
        lat, lon = fields.pop("at", FIER)
        section = fields.get("section", "AL")
        body: dict[str, Any] = {
            "section": section,
            "full_name": f"Test Member {uuid.uuid4().hex[:6]}",
            "phone": self._platform.new_phone(section),
            "language": SECTIONS.get(section, {}).get("language", "en"),
            "qualifications": [{"code": "FIRST_AID", "expires_at": "2030-05-01"}],
            "location": {"lat": lat + north_m / 111_195.0, "lon": lon},
            "availability": "available",
            "consent": {"alerts": True},
        }
        body.update(fields)
        response = self.members.post("/members", json=body, headers=staff or self.admin)
        if response.status_code != 201:
            raise AssertionError(f"POST /members: {response.status_code} {response.text}")
        out = response.json()
        return Member(out["id"], out["phone"], int(out["version"]), section, body)

    def wait_indexed(self, members: list[Member], timeout_s: float = WAIT_S) -> None:
        """Until the alerts service's targeting index holds every member at its version
        (selection and the reach preview read that index, fed over Kafka)."""
        keys = [f"{self._platform.alerts_redis_prefix}alerts:member:{m.id}" for m in members]
        client = redis.Redis.from_url(self._platform.redis_url)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.hget(key, "v")
                seen = pipe.execute()
                behind = [
                    m.id
                    for m, v in zip(members, seen, strict=True)
                    if v is None or int(v) < m.version
                ]
                if not behind:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"alerts has not indexed {len(behind)} of {len(members)} members after "
                        f"{timeout_s:.0f} s\n{self._platform.logs('members', 'alerts')}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    # emergencies --------------------------------------------------------------------

    def declare(self, staff: dict[str, str], **fields: Any) -> dict[str, Any]:
        """Declare an emergency in dispatch; defaults: a drill in Fier, 3 km, FIRST_AID."""
        body: dict[str, Any] = {
            "section": "AL",
            "title": "Flooding, Fier centre",
            "description": "River over its banks near the centre",
            "category": "Rescue",
            "severity": "Severe",
            "urgency": "Immediate",
            "drill": True,
            "area": {"lat": FIER[0], "lon": FIER[1], "radius_m": 3000},
            "required_qualifications": ["FIRST_AID"],
            "members_needed": 2,
        }
        body.update(fields)
        response = self.dispatch.post("/emergencies", json=body, headers=staff)
        if response.status_code != 201:
            raise AssertionError(f"POST /emergencies: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def board(self, staff: dict[str, str], emergency_id: str) -> dict[str, Any]:
        response = self.dispatch.get(f"/emergencies/{emergency_id}/board", headers=staff)
        if response.status_code != 200:
            raise AssertionError(f"GET board: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    # members' answers over SMS -----------------------------------------------------

    def sms_reply(self, phone: str, body: str) -> str:
        """A member texts `body`: Twilio's signed webhook to alerts; returns the reply text."""
        params = {
            "From": phone,
            "To": MUSTER_NUMBER,
            "Body": body,
            "MessageSid": f"SM{uuid.uuid4().hex}",
            "AccountSid": ACCOUNT_SID,
        }
        signature = RequestValidator(AUTH_TOKEN).compute_signature(
            self._platform.public_base + "/sms/inbound", params
        )
        response = self.alerts.post(
            "/sms/inbound", data=params, headers={"X-Twilio-Signature": signature}
        )
        if response.status_code != 200:
            raise AssertionError(f"/sms/inbound {body!r}: {response.status_code} {response.text}")
        found = re.search(r"<Message>(.*)</Message>", response.text, re.S)
        return found.group(1) if found else ""


@dataclass
class ConsolePlatform:
    members: ServiceProcess
    alerts: ServiceProcess
    dispatch: ServiceProcess
    #: None while services/console does not exist yet
    console: ServiceProcess | None
    twilio: FakeTwilio
    #: MUSTER_PUBLIC_BASE_URL of alerts: links in SMS, webhook signatures
    public_base: str
    alerts_redis_prefix: str
    redis_url: str
    admin_email: str = ADMIN_EMAIL
    admin_password: str = ADMIN_PASSWORD
    _phones: Iterator[int] = field(default_factory=lambda: iter(range(10**6)))
    _phone_base: int = field(default_factory=lambda: secrets.randbelow(8_000_000))
    api: StaffApi = field(init=False)

    def __post_init__(self) -> None:
        self.api = StaffApi(self)

    @property
    def console_url(self) -> str:
        if self.console is None:
            raise AssertionError("services/console/__main__.py does not exist yet: no console")
        return self.console.url

    @property
    def members_url(self) -> str:
        return self.members.url

    @property
    def alerts_url(self) -> str:
        return self.alerts.url

    @property
    def dispatch_url(self) -> str:
        return self.dispatch.url

    def new_phone(self, section: str = "AL") -> str:
        """A phone number no other member of this run has, in the section's country."""
        n = (self._phone_base + next(self._phones)) % 10_000_000
        if section == "IT":
            return f"+39320{n:07d}"
        if section == "FR":
            return f"+336{n:08d}"
        return f"+35569{n:07d}"

    def sms_to(self, phone: str) -> list[Sms]:
        """Every SMS the Twilio server accepted for this number, oldest first."""
        return self.twilio.to(phone)

    @property
    def sms(self) -> list[Sms]:
        return list(self.twilio.messages)

    def services(self) -> list[ServiceProcess]:
        found = [self.members, self.alerts, self.dispatch]
        return [*found, self.console] if self.console else found

    def logs(self, *names: str, tail: int = 4000) -> str:
        chosen = [s for s in self.services() if not names or s.name in names]
        return "\n".join(
            f"----- {s.name} log (last {tail} chars) -----\n{s.log()[-tail:]}" for s in chosen
        )

    def eventually(
        self,
        probe: Callable[[], T],
        done: Callable[[T], bool],
        what: str,
        timeout_s: float = WAIT_S,
    ) -> T:
        """Poll `probe` until `done` holds; fail with the last value and the logs."""
        deadline = time.monotonic() + timeout_s
        while True:
            last = probe()
            if done(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not so after {timeout_s:.0f} s; last seen: {last!r}\n{self.logs()}"
                )
            time.sleep(0.2)


@pytest.fixture(scope="module")
def service_overrides() -> dict[str, dict[str, str]]:
    """Extra environment per service (`{"dispatch": {...}}`); override it in a module."""
    return {}


@pytest.fixture(scope="module")
def platform(
    infra: Infra,
    service_overrides: dict[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ConsolePlatform]:
    run = uuid.uuid4().hex[:8]
    prefix = f"c{run}."
    schemas = {name: f"console_{name}_{run}" for name in ("members", "alerts", "dispatch")}
    redis_prefixes = {name: f"{prefix}{name}." for name in schemas}
    topic_specs = all_topics(prefix, max_partitions=3)
    log_dir = tmp_path_factory.mktemp(f"console-{run}")
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "MUSTER_TOPIC_PREFIX": prefix,  # the same topics for all three
        "MUSTER_LOG_LEVEL": "INFO",
        "MUSTER_OUTBOX_POLL_INTERVAL_S": "0.05",
    }
    envs = {
        name: {
            **base,
            "MUSTER_DB_SCHEMA": schemas[name],
            "MUSTER_GROUP_ID": f"console-{run}-{name}",
            "MUSTER_REDIS_PREFIX": redis_prefixes[name],
        }
        for name in schemas
    }
    members_port, alerts_port, console_port = free_port(), free_port(), free_port()
    jwks_url = f"http://127.0.0.1:{members_port}/.well-known/jwks.json"
    public_base = f"http://127.0.0.1:{alerts_port}"
    twilio = FakeTwilio().start()
    envs["members"] |= {
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    envs["alerts"] |= {
        **twilio.env(),  # MUSTER_SMS_PROVIDER=twilio, TWILIO_API_BASE=the local server
        "MUSTER_PUBLIC_BASE_URL": public_base,
        "MUSTER_JWKS_URL": jwks_url,
    }
    envs["dispatch"] |= {
        "MUSTER_JWKS_URL": jwks_url,
        "DISPATCH_CONSOLE_URL": f"http://127.0.0.1:{console_port}",
        # no second wave unless a test asks: it would reach members outside the area
        "DISPATCH_ESCALATION_DELAY_S": "3600",
        "DISPATCH_ESCALATION_DELAY_EXTREME_S": "3600",
        "DISPATCH_SUMMARY_MIN_INTERVAL_S": "0.3",
        "DISPATCH_SCHEDULER_POLL_S": "0.2",
    }
    for name, extra in service_overrides.items():
        if name in envs:
            envs[name] |= extra

    async def create() -> None:
        await provision(infra.kafka_bootstrap, topic_specs)
        engine = create_async_engine(infra.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                for schema in schemas.values():
                    await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            await engine.dispose()

    async def remove() -> None:
        engine = create_async_engine(infra.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                for schema in schemas.values():
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            await engine.dispose()
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([spec.name for spec in topic_specs])
        except KafkaError:
            pass  # a module that fails to clean up must not fail the next one
        finally:
            await admin.close()

    started: list[ServiceProcess] = []
    platform: ConsolePlatform | None = None
    _in_thread(create)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            for migrated in [pool.submit(run_migrations, n, e) for n, e in envs.items()]:
                migrated.result()
            members = start_service("members", envs["members"], log_dir, port=members_port)
            started.append(members)
            futures = [
                pool.submit(start_service, "alerts", envs["alerts"], log_dir, port=alerts_port),
                pool.submit(start_service, "dispatch", envs["dispatch"], log_dir),
            ]
            failures = [f.exception() for f in futures]
            # whichever did start is stopped in `finally` even when the other failed
            started.extend(
                f.result() for f, failed in zip(futures, failures, strict=True) if failed is None
            )
            for failed in failures:
                if failed is not None:
                    raise failed
        alerts, dispatch = started[1], started[2]
        console = None
        if (REPO / "services" / "console" / "__main__.py").is_file():
            console_env = {
                "CONSOLE_MEMBERS_URL": members.url,
                "CONSOLE_ALERTS_URL": alerts.url,
                "CONSOLE_DISPATCH_URL": dispatch.url,
                "CONSOLE_SESSION_SECRET": secrets.token_urlsafe(32),
                # a disabled account's session must end at its very next page
                "CONSOLE_ACCOUNT_RECHECK_S": "0",
                "MUSTER_LOG_LEVEL": "INFO",
                **service_overrides.get("console", {}),
            }
            console = start_service("console", console_env, log_dir, port=console_port)
            started.append(console)
        platform = ConsolePlatform(
            members=members,
            alerts=alerts,
            dispatch=dispatch,
            console=console,
            twilio=twilio,
            public_base=public_base,
            alerts_redis_prefix=redis_prefixes["alerts"],
            redis_url=infra.redis_url,
        )
        yield platform
    finally:
        if platform is not None:
            platform.api.close()
        for service in reversed(started):
            service.stop(20)
        twilio.stop()
        _in_thread(remove)
        client = redis.Redis.from_url(infra.redis_url)
        try:
            for key_prefix in redis_prefixes.values():
                keys = list(client.scan_iter(match=f"{key_prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()


# --- the browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_driver(platform: ConsolePlatform) -> Iterator[Playwright]:
    """Module-scoped on purpose. Playwright's sync API keeps its event loop marked as
    running in this thread for as long as it lives, so no asyncio test or fixture can run
    meanwhile: a session-wide driver made every async test after the first browser module
    fail. Depending on `platform` sets that (asyncio-using) fixture up before the driver
    and tears it down after."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless; never Playwright's downloaded build (none here)."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Run `make infra` "
            "(it installs it) or `apt-get install chromium`, then run the tests again.",
            pytrace=False,
        )
    launched = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield launched
    launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """`new_page(viewport=(360, 640), locale="fr-FR")`: a page in a context of its own
    (its own cookies: another signed-in user); closed after the test."""
    contexts = []

    def make(viewport: tuple[int, int] = DEFAULT_VIEWPORT, locale: str = "en-GB") -> Page:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, locale=locale
        )
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, new_page: Callable[..., Page]) -> Page:
    """A fresh page (new context) per test; `@pytest.mark.viewport(360, 640)` for a phone."""
    marker = request.node.get_closest_marker("viewport")
    viewport = (int(marker.args[0]), int(marker.args[1])) if marker else DEFAULT_VIEWPORT
    return new_page(viewport=viewport)


def sign_in(page: Page, platform: ConsolePlatform, email: str, password: str) -> None:
    """Sign in on the console's own form (`/login`) and wait for the page it leads to."""
    page.goto(f"{platform.console_url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    if page.url.rstrip("/").endswith("/login"):
        error = page.locator("#login-error")
        shown = error.inner_text() if error.count() else page.content()[:500]
        raise AssertionError(f"sign-in of {email} refused: {shown}")


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save what the page shows as docs/screenshots/<name>.png (the README links some)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ValueError(f"screenshot name {name!r}: lower-case letters, digits, - and _")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


#: impacts that fail the check (axe-core: minor, moderate, serious, critical)
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.0/2.1 A and AA rules)."""
    options = {
        "resultTypes": ["violations"],
        "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    }
    results = Axe().run(page, options=options)
    violations: list[dict[str, Any]] = results.response["violations"]
    return violations


def axe_check(page: Page) -> None:
    """Fail when axe-core finds a serious or critical violation, listing each."""
    blocking = [v for v in axe_violations(page) if v.get("impact") in BLOCKING_IMPACTS]
    if not blocking:
        return
    lines = [f"{len(blocking)} serious/critical accessibility violation(s) on {page.url}:"]
    for violation in blocking:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        lines.append(f"  {violation['helpUrl']}")
        for node in violation["nodes"][:5]:
            lines.append(f"    at {', '.join(map(str, node['target']))}: {node['html'][:160]}")
            if node.get("failureSummary"):
                summary = " ".join(node["failureSummary"].split())
                lines.append(f"      {summary[:300]}")
        if len(violation["nodes"]) > 5:
            lines.append(f"    … and {len(violation['nodes']) - 5} more")
    raise AssertionError("\n".join(lines))
