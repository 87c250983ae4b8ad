"""What ``/join`` says to a crowd worker it cannot admit, as a page in the worker's language.

A participant arrives from Prolific or MTurk in a browser: a refusal there is a short page that
says what happened and what to do on the platform, in the language the browser asks for
(``Accept-Language``; English when none of the table's fits). A client that asks for JSON (or
for nothing in particular, as API clients and the tests do) gets the API's JSON error instead.
Every string is in :data:`PAGES`, one row per language: a new language is one more row.

MTurk shows ``/join`` (and the task page it leads to) in a frame of its worker site: these
pages and the redirect may be framed by MTurk's origins (:mod:`rankloop.core.mturk`), by no one
else.
"""

from __future__ import annotations

from typing import Final, Literal, TypeVar

from flask import Response, render_template, request
from werkzeug.wrappers import Response as AnyResponse

from rankloop.core import mturk
from service.config import mturk_stand_in

Reason = Literal[
    "unknown",
    "ended",
    "not_recruiting",
    "full",
    "no_participant",
    "placeholder",
    "preview",
    "too_many",
]

_RETURN_EN = "Please return the study on your platform, so that it does not count against you."
_RETURN_DE = (
    "Bitte geben Sie die Studie auf Ihrer Plattform zurück, damit sie Ihnen nicht angerechnet wird."
)
_RETURN_ES = "Devuelva el estudio en su plataforma para que no cuente en su contra."

# language -> reason -> (title, text); and each language's page title and "study" label.
PAGES: Final[dict[str, dict[Reason | Literal["page"], tuple[str, str]]]] = {
    "en": {
        "page": ("Study link", "rankloop study"),
        "unknown": (
            "This study link does not work",
            "There is no study at this address. Check that you opened the whole link from your "
            "study platform, or contact the researcher.",
        ),
        "ended": (
            "This study has ended",
            f"It takes no more participants. Thank you for your interest. {_RETURN_EN}",
        ),
        "not_recruiting": (
            "This study is not open through this link",
            "It does not take participants through this link at the moment. Please contact the "
            "researcher through your platform.",
        ),
        "full": (
            "This study is full",
            f"It has all the participants it needs. Thank you for your interest. {_RETURN_EN}",
        ),
        "no_participant": (
            "Open this study from your platform",
            "This link needs your participant ID, which your platform (Prolific or MTurk) adds "
            "when you start the study from its page. Go back and start it there.",
        ),
        "placeholder": (
            "This link has no participant ID yet",
            "Your platform did not fill in your participant ID: the link still holds its "
            "placeholder. Start the study from its page on your platform (Prolific or MTurk); if "
            "that does not help, please tell the researcher through your platform.",
        ),
        "preview": (
            "Accept the HIT to start",
            "This is a preview. Accept the HIT, and the task opens here.",
        ),
        "too_many": (
            "Too many tries",
            "This link was opened too often from your connection. Please try again in a minute.",
        ),
    },
    "de": {
        "page": ("Studienlink", "rankloop-Studie"),
        "unknown": (
            "Dieser Studienlink funktioniert nicht",
            "Unter dieser Adresse gibt es keine Studie. Prüfen Sie, ob Sie den vollständigen "
            "Link von Ihrer Studienplattform geöffnet haben, oder wenden Sie sich an die "
            "Forschenden.",
        ),
        "ended": (
            "Diese Studie ist beendet",
            f"Sie nimmt keine Teilnehmenden mehr auf. Vielen Dank für Ihr Interesse. {_RETURN_DE}",
        ),
        "not_recruiting": (
            "Diese Studie ist über diesen Link nicht geöffnet",
            "Sie nimmt derzeit keine Teilnehmenden über diesen Link auf. Bitte wenden Sie sich "
            "über Ihre Plattform an die Forschenden.",
        ),
        "full": (
            "Diese Studie ist voll",
            "Sie hat alle Teilnehmenden, die sie braucht. Vielen Dank für Ihr Interesse. "
            f"{_RETURN_DE}",
        ),
        "no_participant": (
            "Öffnen Sie die Studie über Ihre Plattform",
            "Dieser Link braucht Ihre Teilnehmer-ID, die Ihre Plattform (Prolific oder MTurk) "
            "anhängt, wenn Sie die Studie auf deren Seite starten. Gehen Sie zurück und starten "
            "Sie sie dort.",
        ),
        "placeholder": (
            "Dieser Link enthält noch keine Teilnehmer-ID",
            "Ihre Plattform hat Ihre Teilnehmer-ID nicht eingesetzt: Der Link enthält noch den "
            "Platzhalter. Starten Sie die Studie auf deren Seite Ihrer Plattform (Prolific oder "
            "MTurk); hilft das nicht, wenden Sie sich bitte über Ihre Plattform an die "
            "Forschenden.",
        ),
        "preview": (
            "Nehmen Sie den HIT an, um zu beginnen",
            "Dies ist eine Vorschau. Nehmen Sie den HIT an, dann öffnet sich die Aufgabe hier.",
        ),
        "too_many": (
            "Zu viele Versuche",
            "Dieser Link wurde von Ihrer Verbindung aus zu oft geöffnet. Bitte versuchen Sie es "
            "in einer Minute erneut.",
        ),
    },
    "es": {
        "page": ("Enlace del estudio", "estudio de rankloop"),
        "unknown": (
            "Este enlace del estudio no funciona",
            "No hay ningún estudio en esta dirección. Compruebe que abrió el enlace completo "
            "desde su plataforma, o contacte con el equipo investigador.",
        ),
        "ended": (
            "Este estudio ha terminado",
            f"Ya no admite participantes. Gracias por su interés. {_RETURN_ES}",
        ),
        "not_recruiting": (
            "Este estudio no está abierto mediante este enlace",
            "Por ahora no admite participantes mediante este enlace. Contacte con el equipo "
            "investigador a través de su plataforma.",
        ),
        "full": (
            "Este estudio está completo",
            f"Ya tiene todos los participantes que necesita. Gracias por su interés. {_RETURN_ES}",
        ),
        "no_participant": (
            "Abra el estudio desde su plataforma",
            "Este enlace necesita su ID de participante, que su plataforma (Prolific o MTurk) "
            "añade cuando inicia el estudio desde su página. Vuelva e inícielo allí.",
        ),
        "placeholder": (
            "Este enlace aún no tiene su ID de participante",
            "Su plataforma no ha completado su ID de participante: el enlace aún contiene el "
            "marcador. Inicie el estudio desde su página en su plataforma (Prolific o MTurk); si "
            "no funciona, avise al equipo investigador a través de su plataforma.",
        ),
        "preview": (
            "Acepte el HIT para empezar",
            "Esto es una vista previa. Acepte el HIT y la tarea se abrirá aquí.",
        ),
        "too_many": (
            "Demasiados intentos",
            "Este enlace se abrió demasiadas veces desde su conexión. Vuelva a intentarlo en un "
            "minuto.",
        ),
    },
}
FALLBACK: Final = "en"

# The page links only its own stylesheet and icon and runs no script; MTurk's worker site may
# frame it (the HIT's preview, say), no other site.
_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
)


_R = TypeVar("_R", bound=AnyResponse)


def framed_by_mturk(response: _R, policy: str = "default-src 'none'") -> _R:
    """``response`` with ``policy`` plus ``frame-ancestors`` MTurk's origins (and, for lack of a
    way to name them, no X-Frame-Options: service/app.py adds DENY only where framing is off)."""
    ancestors = " ".join(mturk.site_origins(mturk_stand_in()))
    response.headers["Content-Security-Policy"] = f"{policy}; frame-ancestors {ancestors}"
    return response


def wants_page() -> bool:
    """A browser (text/html before JSON in its Accept header), not an API client."""
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


def language() -> str:
    """The table's language the browser prefers (``Accept-Language``), else English."""
    return request.accept_languages.best_match(tuple(PAGES), default=FALLBACK) or FALLBACK


def join_page(reason: Reason, status: int) -> Response:
    """The page that says ``reason`` in the worker's language, with HTTP ``status``."""
    lang = language()
    strings = PAGES[lang]
    title, text = strings[reason]
    page_title, brand = strings["page"]
    body = render_template(
        "join_error.html",
        lang=lang,
        page_title=page_title,
        brand=brand,
        title=title,
        text=text,
        reason=reason,
        api_root="",
    )
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept, Accept-Language"
    return framed_by_mturk(response, _POLICY)


def too_many_tries(retry_after: int) -> Response | None:
    """The rate limit's 429 as a page for a browser (None: the API's JSON error for the rest)."""
    if not wants_page():
        return None
    response = join_page("too_many", 429)
    response.headers["Retry-After"] = str(retry_after)
    return response
