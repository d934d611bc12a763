"""What members read: SMS and page texts per language, and SMS segment counting.

Texts stay in GSM-7 where the language allows (Albanian is written without ë/ç here,
as it commonly is in SMS) so an alert fits one segment: 160 GSM-7 characters, or 70 when
a single character forces UCS-2. The title is shortened before the link ever is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from babel.numbers import format_decimal

LANGUAGES = ("en", "fr", "it", "sq", "de")

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "drill": "DRILL",
        "alert": "{drill}MUSTER {title}. {km} km. Need {needs}. "
        "Reply YES{code} +minutes or NO{code}. {link}",
        "people": "{n} people",
        "accepted": "Thank you, you are expected{eta}. Reply ON MY WAY when you leave, "
        "ARRIVED on scene.",
        "eta": " in {m} min",
        "standby": "Thank you: enough members are on the way, you are on standby. "
        "We will text you if you are needed.",
        "declined": "Thank you for answering.",
        "arrived": "Arrival noted, thank you.",
        "not_needed": "{drill}MUSTER {title}: no longer needed, thank you.",
        "call_up": "{drill}MUSTER {title}: you are needed now, please go. {link}",
        "stand_down": "{drill}MUSTER {title}: stand down, it is over. Thank you.",
        "stand_down_out": "{drill}MUSTER {title}: stand down, it is over. Thank you. "
        "Reply SAFE when you are home.",
        "correction": "{drill}MUSTER CORRECTION: {title} was a false alarm. Do not go.",
        "closed": "This emergency is closed. Thank you.",
        "help": "MUSTER: reply YES +minutes (YES 15), NO, ON MY WAY, ARRIVED, SAFE (home), "
        "OK (roll call). STOP: no more SMS.",
        "which": "You have several alerts: add the code, e.g. YES {example} 15. Codes: {codes}",
        "which_reply": "You have several alerts: add the code, e.g. {reply}. Codes: {codes}",
        "word_en_route": "ON MY WAY",
        "word_on_scene": "ARRIVED",
        "word_home_safe": "SAFE",
        "word_roll_call_ok": "OK",
        "no_alert": "MUSTER: you have no open alert.",
        "stop": "You will get no more Muster SMS. Reply START to resume.",
        "start": "Muster SMS resumed. Reply HELP for help.",
        "page_coming": "Coming in",
        "page_minutes": "min",
        "page_not_coming": "Not coming",
        "page_recorded": "Your answer is recorded. Thank you.",
        "page_standby": "Enough members are on the way: you are on standby.",
        "page_closed": "This emergency is closed. Thank you.",
        "page_unknown": "This link is not valid.",
        "page_distance": "Distance",
        "page_needed": "Needed",
        "page_qualifications": "Qualifications",
        "page_where": "Where to go",
        "page_centre": "The centre of the area",
        "page_map_app": "Open in my map app",
        "page_osm": "Open in OpenStreetMap",
        "page_answer": "Your answer",
        "en_route": "On your way: noted. Reply ARRIVED on scene.",
        "home_safe": "Home safe: noted. Thank you for your help.",
        "roll_call_ok": "Roll call: you are OK, noted. Thank you.",
        "already": "MUSTER: you are already marked {state}.",
        "state_en_route": "on your way",
        "state_on_scene": "on scene",
        "state_released": "released",
        "state_home_safe": "home safe",
        "released": "{drill}MUSTER {title}: you are released, thank you. "
        "Reply SAFE when you are home.",
        "roll_call": "{drill}MUSTER {title}: roll call. Are you OK? Reply OK.",
        "overdue": "{drill}MUSTER {title}: are you home? Reply SAFE when you are home safe.",
        "page_en_route": "On my way",
        "page_on_scene": "Arrived",
        "page_roll_call_ok": "I'm OK",
        "page_home_safe": "Home safe",
        "page_status": "Your status: {state}.",
        "page_roll_call": "Roll call: are you OK?",
        "page_not_now": "This answer does not apply now.",
    },
    "fr": {
        "drill": "EXERCICE",
        "alert": "{drill}MUSTER {title}. {km} km. Besoin {needs}. "
        "Repondez OUI{code} +minutes ou NON{code}. {link}",
        "people": "{n} pers.",
        "accepted": "Merci, vous etes attendu{eta}. Repondez EN ROUTE au depart, ARRIVE sur place.",
        "eta": " dans {m} min",
        "standby": "Merci: assez de membres sont en route, vous etes en reserve. "
        "Nous vous ecrirons si besoin.",
        "declined": "Merci de votre reponse.",
        "arrived": "Arrivee notee, merci.",
        "not_needed": "{drill}MUSTER {title}: plus besoin, merci.",
        "call_up": "{drill}MUSTER {title}: on a besoin de vous, partez. {link}",
        "stand_down": "{drill}MUSTER {title}: fin de l'intervention. Merci.",
        "stand_down_out": "{drill}MUSTER {title}: fin de l'intervention. Merci. "
        "Repondez RENTRE une fois chez vous.",
        "correction": "{drill}MUSTER CORRECTION: {title} etait une fausse alerte. N'y allez pas.",
        "closed": "Cette urgence est terminee. Merci.",
        "help": "MUSTER: repondez OUI +minutes (OUI 15), NON, EN ROUTE, ARRIVE, RENTRE, "
        "OK (appel). STOP: plus de SMS.",
        "which": "Vous avez plusieurs alertes: ajoutez le code, ex. OUI {example} 15. "
        "Codes: {codes}",
        "which_reply": "Vous avez plusieurs alertes: ajoutez le code, ex. {reply}. Codes: {codes}",
        "word_en_route": "EN ROUTE",
        "word_on_scene": "ARRIVE",
        "word_home_safe": "RENTRE",
        "word_roll_call_ok": "OK",
        "no_alert": "MUSTER: vous n'avez pas d'alerte ouverte.",
        "stop": "Vous ne recevrez plus de SMS Muster. Repondez START pour reprendre.",
        "start": "SMS Muster repris. Repondez HELP pour l'aide.",
        "page_coming": "J'arrive dans",
        "page_minutes": "min",
        "page_not_coming": "Je ne viens pas",
        "page_recorded": "Votre reponse est enregistree. Merci.",
        "page_standby": "Assez de membres sont en route: vous etes en reserve.",
        "page_closed": "Cette urgence est terminee. Merci.",
        "page_unknown": "Ce lien n'est pas valide.",
        "page_distance": "Distance",
        "page_needed": "Besoin",
        "page_qualifications": "Qualifications",
        "page_where": "Où aller",
        "page_centre": "Le centre de la zone",
        "page_map_app": "Ouvrir dans mon application de cartes",
        "page_osm": "Ouvrir dans OpenStreetMap",
        "page_answer": "Votre réponse",
        "en_route": "En route: note. Repondez ARRIVE sur place.",
        "home_safe": "Rentre en securite: note. Merci de votre aide.",
        "roll_call_ok": "Appel: vous allez bien, c'est note. Merci.",
        "already": "MUSTER: vous etes deja indique {state}.",
        "state_en_route": "en route",
        "state_on_scene": "sur place",
        "state_released": "libere",
        "state_home_safe": "rentre",
        "released": "{drill}MUSTER {title}: vous etes libere, merci. "
        "Repondez RENTRE une fois chez vous.",
        "roll_call": "{drill}MUSTER {title}: appel. Tout va bien? Repondez OK.",
        "overdue": "{drill}MUSTER {title}: etes-vous rentre? Repondez RENTRE une fois chez vous.",
        "page_en_route": "Je suis en route",
        "page_on_scene": "Je suis arrivé",
        "page_roll_call_ok": "Tout va bien",
        "page_home_safe": "Je suis rentré",
        "page_status": "Votre statut : {state}.",
        "page_roll_call": "Appel : tout va bien ?",
        "page_not_now": "Cette réponse ne s'applique pas maintenant.",
    },
    "it": {
        "drill": "ESERCITAZIONE",
        "alert": "{drill}MUSTER {title}. {km} km. Serve {needs}. "
        "Rispondi SI{code} +minuti o NO{code}. {link}",
        "people": "{n} persone",
        "accepted": "Grazie, sei atteso{eta}. Rispondi IN ARRIVO alla partenza, "
        "ARRIVATO sul posto.",
        "eta": " tra {m} min",
        "standby": "Grazie: abbastanza membri in arrivo, sei di riserva. Ti scriviamo se servi.",
        "declined": "Grazie della risposta.",
        "arrived": "Arrivo registrato, grazie.",
        "not_needed": "{drill}MUSTER {title}: non serve piu, grazie.",
        "call_up": "{drill}MUSTER {title}: servi ora, vai per favore. {link}",
        "stand_down": "{drill}MUSTER {title}: intervento finito. Grazie.",
        "stand_down_out": "{drill}MUSTER {title}: intervento finito. Grazie. "
        "Rispondi A CASA quando sei rientrato.",
        "correction": "{drill}MUSTER CORREZIONE: {title} era un falso allarme. Non andare.",
        "closed": "Questa emergenza e chiusa. Grazie.",
        "help": "MUSTER: rispondi SI +minuti (SI 15), NO, IN ARRIVO, ARRIVATO, A CASA, "
        "OK (appello). STOP: niente SMS.",
        "which": "Hai piu allerte: aggiungi il codice, es. SI {example} 15. Codici: {codes}",
        "which_reply": "Hai piu allerte: aggiungi il codice, es. {reply}. Codici: {codes}",
        "word_en_route": "IN ARRIVO",
        "word_on_scene": "ARRIVATO",
        "word_home_safe": "A CASA",
        "word_roll_call_ok": "OK",
        "no_alert": "MUSTER: non hai allerte aperte.",
        "stop": "Non riceverai piu SMS Muster. Rispondi START per riprendere.",
        "start": "SMS Muster riattivati. Rispondi HELP per aiuto.",
        "page_coming": "Arrivo tra",
        "page_minutes": "min",
        "page_not_coming": "Non vengo",
        "page_recorded": "Risposta registrata. Grazie.",
        "page_standby": "Abbastanza membri in arrivo: sei di riserva.",
        "page_closed": "Questa emergenza e chiusa. Grazie.",
        "page_unknown": "Questo link non e valido.",
        "page_distance": "Distanza",
        "page_needed": "Serve",
        "page_qualifications": "Qualifiche",
        "page_where": "Dove andare",
        "page_centre": "Il centro dell'area",
        "page_map_app": "Apri nell'app delle mappe",
        "page_osm": "Apri in OpenStreetMap",
        "page_answer": "La tua risposta",
        "en_route": "In arrivo: registrato. Rispondi ARRIVATO sul posto.",
        "home_safe": "A casa al sicuro: registrato. Grazie del tuo aiuto.",
        "roll_call_ok": "Appello: stai bene, registrato. Grazie.",
        "already": "MUSTER: risulti gia {state}.",
        "state_en_route": "in arrivo",
        "state_on_scene": "sul posto",
        "state_released": "congedato",
        "state_home_safe": "a casa",
        "released": "{drill}MUSTER {title}: sei congedato, grazie. "
        "Rispondi A CASA quando sei rientrato.",
        "roll_call": "{drill}MUSTER {title}: appello. Stai bene? Rispondi OK.",
        "overdue": "{drill}MUSTER {title}: sei rientrato? Rispondi A CASA quando sei a casa.",
        "page_en_route": "Sto arrivando",
        "page_on_scene": "Sono arrivato",
        "page_roll_call_ok": "Sto bene",
        "page_home_safe": "Sono a casa",
        "page_status": "Il tuo stato: {state}.",
        "page_roll_call": "Appello: stai bene?",
        "page_not_now": "Questa risposta ora non vale.",
    },
    "sq": {
        "drill": "STERVITJE",
        "alert": "{drill}MUSTER {title}. {km} km. Nevojiten {needs}. "
        "Pergjigju PO{code} +minuta ose JO{code}. {link}",
        "people": "{n} veta",
        "accepted": "Faleminderit, ju presim{eta}. Pergjigju NE RRUGE kur nisheni, "
        "MBERRITA kur te arrini.",
        "eta": " per {m} min",
        "standby": "Faleminderit: mjaft anetare jane rruges, jeni ne rezerve. "
        "Do t'ju shkruajme nese duhet.",
        "declined": "Faleminderit per pergjigjen.",
        "arrived": "Mberritja u shenua, faleminderit.",
        "not_needed": "{drill}MUSTER {title}: nuk nevojitet me, faleminderit.",
        "call_up": "{drill}MUSTER {title}: ju duhen tani, ju lutem shkoni. {link}",
        "stand_down": "{drill}MUSTER {title}: nderhyrja mbaroi. Faleminderit.",
        "stand_down_out": "{drill}MUSTER {title}: nderhyrja mbaroi. Faleminderit. "
        "Pergjigju NE SHTEPI kur te ktheheni.",
        "correction": "{drill}MUSTER KORRIGJIM: {title} ishte alarm i rreme. Mos shkoni.",
        "closed": "Kjo emergjence u mbyll. Faleminderit.",
        "help": "MUSTER: pergjigju PO +minuta (PO 15), JO, NE RRUGE, MBERRITA, NE SHTEPI, "
        "OK (apel). STOP: pa SMS.",
        "which": "Keni disa alarme: shtoni kodin, p.sh. PO {example} 15. Kodet: {codes}",
        "which_reply": "Keni disa alarme: shtoni kodin, p.sh. {reply}. Kodet: {codes}",
        "word_en_route": "NE RRUGE",
        "word_on_scene": "MBERRITA",
        "word_home_safe": "NE SHTEPI",
        "word_roll_call_ok": "OK",
        "no_alert": "MUSTER: nuk keni alarm te hapur.",
        "stop": "Nuk do merrni me SMS Muster. Pergjigju START per t'i rifilluar.",
        "start": "SMS Muster rifilluan. Pergjigju HELP per ndihme.",
        "page_coming": "Vij per",
        "page_minutes": "min",
        "page_not_coming": "Nuk vij",
        "page_recorded": "Pergjigja u regjistrua. Faleminderit.",
        "page_standby": "Mjaft anetare jane rruges: jeni ne rezerve.",
        "page_closed": "Kjo emergjence u mbyll. Faleminderit.",
        "page_unknown": "Kjo lidhje nuk eshte e vlefshme.",
        "page_distance": "Distanca",
        "page_needed": "Nevojiten",
        "page_qualifications": "Kualifikimet",
        "page_where": "Ku të shkoni",
        "page_centre": "Qendra e zonës",
        "page_map_app": "Hape në aplikacionin e hartave",
        "page_osm": "Hape në OpenStreetMap",
        "page_answer": "Përgjigja juaj",
        "en_route": "Ne rruge: u shenua. Pergjigju MBERRITA kur te arrini.",
        "home_safe": "Ne shtepi: u shenua. Faleminderit per ndihmen.",
        "roll_call_ok": "Apeli: jeni mire, u shenua. Faleminderit.",
        "already": "MUSTER: jeni shenuar tashme {state}.",
        "state_en_route": "ne rruge",
        "state_on_scene": "ne vend",
        "state_released": "te liruar",
        "state_home_safe": "ne shtepi",
        "released": "{drill}MUSTER {title}: jeni te liruar, faleminderit. "
        "Pergjigju NE SHTEPI kur te ktheheni.",
        "roll_call": "{drill}MUSTER {title}: apel. Jeni mire? Pergjigju OK.",
        "overdue": "{drill}MUSTER {title}: u kthyet? Pergjigju NE SHTEPI kur te jeni ne shtepi.",
        "page_en_route": "Jam në rrugë",
        "page_on_scene": "Mbërrita",
        "page_roll_call_ok": "Jam mirë",
        "page_home_safe": "Jam në shtëpi",
        "page_status": "Gjendja juaj: {state}.",
        "page_roll_call": "Apel: jeni mirë?",
        "page_not_now": "Kjo përgjigje nuk vlen tani.",
    },
    "de": {
        "drill": "UEBUNG",
        "alert": "{drill}MUSTER {title}. {km} km. Bedarf {needs}. "
        "Antwort JA{code} +Minuten oder NEIN{code}. {link}",
        "people": "{n} Pers.",
        "accepted": "Danke, Sie werden erwartet{eta}. Antwort UNTERWEGS bei Abfahrt, "
        "ANGEKOMMEN vor Ort.",
        "eta": " in {m} Min",
        "standby": "Danke: genug Mitglieder unterwegs, Sie sind in Bereitschaft.",
        "declined": "Danke fuer Ihre Antwort.",
        "arrived": "Ankunft vermerkt, danke.",
        "not_needed": "{drill}MUSTER {title}: nicht mehr noetig, danke.",
        "call_up": "{drill}MUSTER {title}: Sie werden jetzt gebraucht. {link}",
        "stand_down": "{drill}MUSTER {title}: Einsatz beendet. Danke.",
        "stand_down_out": "{drill}MUSTER {title}: Einsatz beendet. Danke. "
        "Antwort ZUHAUSE wenn Sie daheim sind.",
        "correction": "{drill}MUSTER KORREKTUR: {title} war ein Fehlalarm. Nicht ausruecken.",
        "closed": "Dieser Einsatz ist beendet. Danke.",
        "help": "MUSTER: Antwort JA +Minuten (JA 15), NEIN, UNTERWEGS, ANGEKOMMEN, ZUHAUSE, "
        "OK (Appell). STOP: keine SMS.",
        "which": "Mehrere Alarme: Code angeben, z.B. JA {example} 15. Codes: {codes}",
        "which_reply": "Mehrere Alarme: Code angeben, z.B. {reply}. Codes: {codes}",
        "word_en_route": "UNTERWEGS",
        "word_on_scene": "ANGEKOMMEN",
        "word_home_safe": "ZUHAUSE",
        "word_roll_call_ok": "OK",
        "no_alert": "MUSTER: kein offener Alarm.",
        "stop": "Keine Muster-SMS mehr. Antwort START zum Fortsetzen.",
        "start": "Muster-SMS wieder aktiv. Antwort HELP fuer Hilfe.",
        "page_coming": "Ich komme in",
        "page_minutes": "Min",
        "page_not_coming": "Ich komme nicht",
        "page_recorded": "Antwort gespeichert. Danke.",
        "page_standby": "Genug Mitglieder unterwegs: Sie sind in Bereitschaft.",
        "page_closed": "Dieser Einsatz ist beendet. Danke.",
        "page_unknown": "Dieser Link ist nicht gueltig.",
        "page_distance": "Entfernung",
        "page_needed": "Bedarf",
        "page_qualifications": "Qualifikationen",
        "page_where": "Wohin",
        "page_centre": "Die Mitte des Gebiets",
        "page_map_app": "In meiner Karten-App öffnen",
        "page_osm": "In OpenStreetMap öffnen",
        "page_answer": "Ihre Antwort",
        "en_route": "Unterwegs: vermerkt. Antwort ANGEKOMMEN vor Ort.",
        "home_safe": "Sicher zuhause: vermerkt. Danke fuer Ihre Hilfe.",
        "roll_call_ok": "Appell: Ihnen geht es gut, vermerkt. Danke.",
        "already": "MUSTER: Sie sind schon als {state} vermerkt.",
        "state_en_route": "unterwegs",
        "state_on_scene": "vor Ort",
        "state_released": "entlassen",
        "state_home_safe": "zuhause",
        "released": "{drill}MUSTER {title}: Sie sind entlassen, danke. "
        "Antwort ZUHAUSE wenn Sie daheim sind.",
        "roll_call": "{drill}MUSTER {title}: Appell. Alles gut? Antwort OK.",
        "overdue": "{drill}MUSTER {title}: Sind Sie zuhause? Antwort ZUHAUSE wenn ja.",
        "page_en_route": "Ich bin unterwegs",
        "page_on_scene": "Ich bin angekommen",
        "page_roll_call_ok": "Mir geht es gut",
        "page_home_safe": "Ich bin zuhause",
        "page_status": "Ihr Status: {state}.",
        "page_roll_call": "Appell: alles gut?",
        "page_not_now": "Diese Antwort gilt jetzt nicht.",
    },
}


#: reachability drills (issue 12, drills.py): the test SMS (one GSM-7 segment with its
#: link), the answer to an OK, and the drill's answer page
_DRILL_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "drill_test": "MUSTER TEST, no emergency: reply OK, or open {link}",
        "drill_ok": "Thank you: your test answer is recorded.",
        "drill_page_title": "Muster test",
        "drill_page_intro": "This is a test, not an emergency. Are you reachable?",
        "drill_page_ok": "OK, I got it",
        "drill_page_done": "Thank you: your test answer is recorded.",
        "drill_page_unknown": "This link is not valid.",
    },
    "fr": {
        "drill_test": "MUSTER TEST, pas d'urgence : répondez OK, ou ouvrez {link}",
        "drill_ok": "Merci : votre réponse au test est enregistrée.",
        "drill_page_title": "Test Muster",
        "drill_page_intro": "Ceci est un test, pas une urgence. Êtes-vous joignable ?",
        "drill_page_ok": "OK, bien reçu",
        "drill_page_done": "Merci : votre réponse au test est enregistrée.",
        "drill_page_unknown": "Ce lien n'est pas valide.",
    },
    "it": {
        "drill_test": "MUSTER TEST, nessuna emergenza: rispondi OK, o apri {link}",
        "drill_ok": "Grazie: la tua risposta al test è registrata.",
        "drill_page_title": "Test Muster",
        "drill_page_intro": "Questo è un test, non un'emergenza. Sei raggiungibile?",
        "drill_page_ok": "OK, ricevuto",
        "drill_page_done": "Grazie: la tua risposta al test è registrata.",
        "drill_page_unknown": "Questo link non è valido.",
    },
    "sq": {
        "drill_test": "MUSTER TEST, nuk ka emergjence: pergjigju OK, ose hap {link}",
        "drill_ok": "Faleminderit: pergjigja juaj e testit u regjistrua.",
        "drill_page_title": "Test Muster",
        "drill_page_intro": "Ky është një test, jo një emergjencë. A jeni i arritshëm?",
        "drill_page_ok": "OK, e mora",
        "drill_page_done": "Faleminderit: përgjigja juaj e testit u regjistrua.",
        "drill_page_unknown": "Kjo lidhje nuk është e vlefshme.",
    },
    "de": {
        "drill_test": "MUSTER TEST, kein Notfall: antworten Sie OK, oder öffnen Sie {link}",
        "drill_ok": "Danke: Ihre Testantwort ist erfasst.",
        "drill_page_title": "Muster-Test",
        "drill_page_intro": "Dies ist ein Test, kein Notfall. Sind Sie erreichbar?",
        "drill_page_ok": "OK, erhalten",
        "drill_page_done": "Danke: Ihre Testantwort ist erfasst.",
        "drill_page_unknown": "Dieser Link ist nicht gültig.",
    },
}
for _language, _texts in _DRILL_TEXTS.items():
    _TEXTS[_language].update(_texts)

#: the names of the qualification codes members' snapshots carry, for the answer page.
#: Alerts never asks members at request time, so it keeps the names of the catalogue
#: members seeds (services/members/migrations/versions/0002_members.py); a code added
#: later by an admin reads as its code, made readable ("WATER_RESCUE" → "Water rescue").
_QUALIFICATIONS: dict[str, dict[str, str]] = {
    "FIRST_AID": {
        "en": "First aid",
        "fr": "Premiers secours",
        "it": "Primo soccorso",
        "sq": "Ndihma e parë",
        "de": "Erste Hilfe",
    },
    "CPR": {
        "en": "Cardiopulmonary resuscitation (CPR)",
        "fr": "Réanimation cardio-pulmonaire (RCP)",
        "it": "Rianimazione cardiopolmonare (RCP)",
        "sq": "Ringjallja kardiopulmonare (RKP)",
        "de": "Herz-Lungen-Wiederbelebung (HLW)",
    },
    "SAR": {
        "en": "Search and rescue",
        "fr": "Recherche et sauvetage",
        "it": "Ricerca e soccorso",
        "sq": "Kërkim dhe shpëtim",
        "de": "Suche und Rettung",
    },
    "ICS_100": {
        "en": "Incident Command System 100",
        "fr": "Système de commandement des interventions (ICS 100)",
        "it": "Sistema di comando degli interventi (ICS 100)",
        "sq": "Sistemi i komandimit të incidenteve (ICS 100)",
        "de": "Incident Command System 100",
    },
    "ICS_200": {
        "en": "Incident Command System 200",
        "fr": "Système de commandement des interventions (ICS 200)",
        "it": "Sistema di comando degli interventi (ICS 200)",
        "sq": "Sistemi i komandimit të incidenteve (ICS 200)",
        "de": "Incident Command System 200",
    },
    "SCHOOL_SAFETY": {
        "en": "School safety",
        "fr": "Sécurité scolaire",
        "it": "Sicurezza scolastica",
        "sq": "Siguria në shkolla",
        "de": "Schulsicherheit",
    },
    "DRIVER": {
        "en": "Emergency vehicle driver",
        "fr": "Conducteur de véhicule d'urgence",
        "it": "Autista di mezzi di emergenza",
        "sq": "Shofer i automjetit të emergjencës",
        "de": "Einsatzfahrer",
    },
}


def qualification_name(code: str, language: str | None) -> str:
    """A qualification's name in the member's language (the code made readable when the
    catalogue here does not know it)."""
    names = _QUALIFICATIONS.get(code)
    if names is not None:
        return names.get(language_of(language), names["en"])
    words = code.replace("_", " ").strip()
    return words[:1].upper() + words[1:].lower() if words else code


def distance_text(distance_m: float, language: str | None) -> str:
    """A distance as people say it: "< 10 m", "250 m", "3.4 km" ("3,4 km" in French),
    "12 km". Metres to the nearest 10 under a kilometre, a tenth of a kilometre under
    10 km, whole kilometres beyond (positions are homes: more precision would be false)."""
    locale = language_of(language)
    metres = max(0.0, float(distance_m))
    if metres < 10:
        return "<\u00a010\u00a0m"
    tens = round(metres / 10) * 10
    if tens < 1000:
        return f"{tens}\u00a0m"
    km = round(metres / 1000, 1) if metres < 9950 else round(metres / 1000)
    return f"{format_decimal(km, format='#,##0.#', locale=locale)}\u00a0km"


def language_of(language: str | None) -> str:
    code = (language or "en").split("-")[0].lower()
    return code if code in _TEXTS else "en"


def text(language: str | None, name: str, **values: object) -> str:
    return _TEXTS[language_of(language)][name].format(**values)


# --- segments -------------------------------------------------------------------------

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Encoding:
    name: str  # "GSM-7" or "UCS-2"
    units: int  # septets (extension characters count two) or UTF-16 code units
    segments: int


_ASCII_OUTSIDE_GSM7_BASIC = re.compile(r"[`\[\\\]^{|}~\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")


def encoding_of(body: str) -> Encoding:
    if body.isascii() and not _ASCII_OUTSIDE_GSM7_BASIC.search(body):
        units = len(body)
        return Encoding("GSM-7", units, 1 if units <= 160 else math.ceil(units / 153))
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in body):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        return Encoding("GSM-7", units, 1 if units <= 160 else math.ceil(units / 153))
    units = len(body.encode("utf-16-le")) // 2
    return Encoding("UCS-2", units, 1 if units <= 70 else math.ceil(units / 67))


def segments(body: str) -> int:
    return encoding_of(body).segments


# --- the alert SMS --------------------------------------------------------------------


def alert_sms(
    *,
    language: str,
    title: str,
    distance_m: int,
    members_needed: int,
    qualifications: list[str],
    drill: bool,
    link: str,
    reply_code: str | None,
) -> str:
    """The first SMS of an emergency, shortened (title first) to one segment if it can."""
    lang = language_of(language)
    needs = text(lang, "people", n=members_needed)
    if qualifications:
        needs += " " + ",".join(qualifications)
    km = f"{distance_m / 1000:.1f}"
    code = f" {reply_code}" if reply_code else ""

    def render(shown_title: str) -> str:
        return text(
            lang,
            "alert",
            drill=text(lang, "drill") + " " if drill else "",
            title=shown_title,
            km=km,
            needs=needs,
            code=code,
            link=link,
        )

    body = render(title)
    shown = title
    while segments(body) > 1 and len(shown) > 12:
        shown = shown[: max(12, len(shown) - max(4, (len(shown) // 5)))].rstrip()
        body = render(shown + "...")
    if segments(body) > 1:
        # a character outside GSM-7 in the title forces UCS-2: keep the title's ASCII form
        ascii_title = title.encode("ascii", "ignore").decode() or "ALERT"
        candidate = render(ascii_title[:40])
        if segments(candidate) < segments(body):
            body = candidate
    return body


def follow_up_sms(kind: str, *, language: str, title: str, drill: bool, link: str = "") -> str:
    """not_needed, call_up, stand_down or correction; the safety loop's released,
    roll_call and overdue."""
    lang = language_of(language)
    short_title = title if len(title) <= 60 else title[:57].rstrip() + "..."
    return text(
        lang,
        kind,
        drill=text(lang, "drill") + " " if drill else "",
        title=short_title,
        link=link,
    )
