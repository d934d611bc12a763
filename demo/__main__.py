"""`python -m demo` (`make demo`): seed the running stack, run a drill, print where to look."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from rich.console import Console
from rich.table import Table

from demo import drill, seeding
from demo.apis import Apis, DemoError
from demo.settings import Settings


def run(settings: Settings, out: Console) -> None:
    if not settings.admin_email or not settings.admin_password:
        raise DemoError(
            f"no admin to start from: {settings.secrets_file} is missing (run `make up`, which "
            "writes it) or set MUSTER_BOOTSTRAP_ADMIN_EMAIL and MUSTER_BOOTSTRAP_ADMIN_PASSWORD"
        )
    if not settings.twilio_auth_token:
        raise DemoError(
            f"no TWILIO_AUTH_TOKEN in the environment or {settings.secrets_file}: the demo signs "
            "the members' SMS answers with it (run `make up`, which writes it)"
        )
    apis = Apis(settings)
    try:
        apis.check_running()
        try:
            admin = apis.sign_in(settings.admin_email, settings.admin_password)
        except DemoError as exc:
            raise DemoError(
                f"the bootstrap admin {settings.admin_email} cannot sign in with the password in "
                f"{settings.secrets_file}: an admin made earlier keeps its first password. "
                "Set MUSTER_BOOTSTRAP_ADMIN_EMAIL/PASSWORD to an admin that works"
            ) from exc
        passwords = seeding.account_passwords(settings.accounts_file)
        out.rule("seeding (members API)")
        seeding.ensure_sections(apis, admin, out)
        seeding.ensure_accounts(apis, admin, passwords, out)
        present = seeding.ensure_members(apis, admin, settings.members, date.today(), out)
        out.print(f"members in the registry: {apis.member_count(admin)}")

        out.rule("drill in Fier (dispatch, alerts' signed SMS webhook)")
        coordinator = _sign_in(apis, passwords, "coordinator")
        second = _sign_in(apis, passwords, "coordinator2")
        authority = _sign_in(apis, passwords, "authority")
        drill.close_earlier_drills(apis, coordinator, out)
        emergency = drill.declare(apis, coordinator, second, settings.members, out)
        by_id = {str(m["id"]): m for m in present.values()}
        drill.simulate_answers(apis, coordinator, emergency, by_id, out)
        summary = apis.expect(
            apis.dispatch.get(f"/emergencies/{emergency['id']}/summary", headers=authority), 200
        )
        out.print(drill.summary_table(summary))
        _where_to_look(apis, settings, emergency, passwords, out)
    finally:
        apis.close()


def _sign_in(apis: Apis, passwords: dict[str, str], key: str) -> dict[str, str]:
    email = next(a.email for a in seeding.ACCOUNTS if a.key == key)
    return apis.sign_in(email, passwords[email])


def _where_to_look(
    apis: Apis,
    settings: Settings,
    emergency: dict[str, Any],
    passwords: dict[str, str],
    out: Console,
) -> None:
    console = settings.console_url.rstrip("/")
    out.rule("open the console")
    # soft_wrap: a URL broken over two lines cannot be clicked or copied
    out.print(
        f"board of this drill: [bold]{console}/emergencies/{emergency['id']}[/bold]", soft_wrap=True
    )
    out.print(
        f"authority's view:    {console}/authority/emergencies/{emergency['id']}", soft_wrap=True
    )
    if not apis.console_answers():
        out.print(f"[yellow]the console does not answer at {console}: run `make up`[/yellow]")
    accounts = Table(title="sign in with", title_justify="left")
    accounts.add_column("email", no_wrap=True)
    accounts.add_column("password", no_wrap=True)
    accounts.add_column("what for")
    for account in seeding.ACCOUNTS:
        accounts.add_row(account.email, passwords[account.email], account.what)
    accounts.add_row(
        settings.admin_email, f"(in {settings.secrets_file.name})", "bootstrap admin from make up"
    )
    out.print(accounts)
    out.print(
        f"Passwords are kept in {settings.accounts_file}. Running `make demo` again adds "
        "nothing to the data set and declares a new drill (closing this one)."
    )


def main() -> None:
    out = Console()
    try:
        run(Settings().with_local_secrets(), out)
    except DemoError as exc:
        out.print(f"[bold red]error:[/bold red] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        out.print("interrupted: what was created stays; run `make demo` again to continue")
        sys.exit(130)


if __name__ == "__main__":
    main()
