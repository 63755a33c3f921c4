"""The personal-data guard (assistant/privacy.py): each kind found with valid numbers and not with
invalid ones, document numbers and dates left alone, masking, the three modes, and no question
of the evaluation flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import ConfigError, InputError, PersonalDataError
from assistant.privacy import (
    find_personal_data,
    luhn_valid,
    nhs_number_valid,
    personal_data_kinds,
    redact,
    screen,
    screen_turns,
)
from assistant.schema import Turn
from assistant.settings import Settings

EXAMPLE = (
    "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, jane.smith@example.nhs.uk, 07700 900123"
)
EVAL = Path(__file__).resolve().parents[2] / "eval"


def _nhs_with_check(nine: str) -> str | None:
    check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(nine)) % 11
    check = 0 if check == 11 else check
    return None if check == 10 else nine + str(check)


# -- check digits ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["9434765919", "4010232137", "9990001111"[:9] + "x"])
def test_nhs_check_digit(number: str) -> None:
    expected = number.isdigit() and _nhs_with_check(number[:9]) == number
    assert nhs_number_valid(number) is expected


def test_nhs_check_digit_against_the_rule_for_many_numbers() -> None:
    for start in range(100_000_000, 100_000_000 + 2000, 7):
        nine = str(start)
        valid = _nhs_with_check(nine)
        for last in "0123456789":
            assert nhs_number_valid(nine + last) is (valid == nine + last)


def test_a_check_digit_of_ten_is_no_nhs_number() -> None:
    nine = next(str(n) for n in range(100_000_000, 100_001_000) if _nhs_with_check(str(n)) is None)
    assert not any(nhs_number_valid(nine + d) for d in "0123456789")


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),  # Visa test number
        ("5555555555554444", True),  # Mastercard test number
        ("378282246310005", True),  # Amex test number
        ("4111111111111112", False),
        ("1234567890123456", False),
        ("79927398713", True),  # the textbook example
        ("79927398710", False),
        ("", False),
        ("12a4", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


# -- each kind -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("NHS number 943 476 5919", "NHS number"),
        ("patient 9434765919 was referred", "NHS number"),
        ("nhs no. 943-476-5919", "NHS number"),
        ("NI number AB 12 34 56 C", "National Insurance number"),
        ("her NINO is ce123456a", "National Insurance number"),
        ("write to jane.smith@example.nhs.uk please", "email address"),
        ("j_o'b+x@gp-surgery.co.uk", "email address"),
        ("call 07700 900123", "phone number"),
        ("call 07700900123", "phone number"),
        ("call +44 7700 900123", "phone number"),
        ("call +44 (0)20 7946 0000", "phone number"),
        ("call 020 7946 0000", "phone number"),
        ("call (01632) 960001", "phone number"),
        ("call 0044 113 496 0000", "phone number"),
        ("card 4111 1111 1111 1111", "payment card number"),
        ("card 4111-1111-1111-1111", "payment card number"),
        ("card 378282246310005", "payment card number"),
        ("DOB 14/03/1962", "date of birth"),
        ("d.o.b. 14.03.62", "date of birth"),
        ("date of birth: 14 March 1962", "date of birth"),
        ("she was born on 3rd May 1950", "date of birth"),
        ("Jane Smith, 14/03/1962", "date of birth"),
        ("Jane Smith 14 March 1962", "date of birth"),
        ("John O'Neil (3 May 1950)", "date of birth"),
        ("Mary J. McDonald, March 3, 1950", "date of birth"),
    ],
)
def test_each_kind_is_found(text: str, kind: str) -> None:
    assert personal_data_kinds(text) == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "NHS number 943 476 5918",  # the check digit fails
        "reference 1234567890",  # fails the check
        "What does NHS 111 do?",
        "How many of the 209 CCGs commission mental health?",
        "What changed on 1 April 2013?",
        "from 1 April 2013 CCGs took over commissioning",
        "Guidance published 14 March 2012 by the Department of Health",
        "NHS England, 1 April 2013",
        "Clinical Commissioning Groups, 1 April 2013",
        "The Care Act, April 1, 2015",
        "Health and Social Care Act 2012",
        "a 0.5 per cent uplift in 2013/14 and 2014-15",
        "Between 2013 and 2015, 1,234,567 people were seen",
        "call 0300 311 2233 or 0800 123 4567",  # non-geographic service numbers
        "QQ 12 34 56 C",  # Q is never a prefix letter
        "GB 12 34 56 A",  # GB is never a prefix
        "AB 12 34 56 E",  # the suffix is A-D
        "4111 1111 1111 1112",  # fails the Luhn check
        "0000 0000 0000 0000",
        "156641360591757 function_2",  # a timestamp passing the Luhn check: no card starts 1
        "an email like someone at example dot com",
        "version 2.3.1, paragraph 4.2.10",
        "£12,500,000 over 3 years",
    ],
)
def test_numbers_and_dates_of_documents_are_not_personal_data(text: str) -> None:
    assert find_personal_data(text) == []


def test_the_issue_example_is_found_with_every_kind() -> None:
    assert personal_data_kinds(EXAMPLE) == [
        "date of birth",
        "NHS number",
        "email address",
        "phone number",
    ]


def test_invisible_characters_do_not_hide_a_number() -> None:
    assert personal_data_kinds("NHS 943\u200b476\u200b5919") == ["NHS number"]


def test_redact_masks_each_value_with_its_kind() -> None:
    assert redact(EXAMPLE) == (
        "Jane Smith, DOB [date of birth], NHS number [NHS number], [email address], [phone number]"
    )
    assert redact("nothing here, 1 April 2013") == "nothing here, 1 April 2013"
    assert find_personal_data(redact(EXAMPLE)) == []


# -- the modes -------------------------------------------------------------------------------


def test_block_refuses_naming_the_kinds_never_the_values() -> None:
    with pytest.raises(PersonalDataError) as caught:
        screen(["What is a CCG?", EXAMPLE], "block")
    err = caught.value
    assert isinstance(err, InputError)
    assert err.kinds == ["date of birth", "NHS number", "email address", "phone number"]
    assert err.reason == "personal_data"
    message = str(err)
    assert "NHS number" in message
    assert "rephrase" in message
    for value in ("943 476 5919", "jane.smith", "07700", "1962", "Jane"):
        assert value not in message


def test_redact_and_off_let_the_text_through() -> None:
    assert screen([EXAMPLE], "redact") == [redact(EXAMPLE)]
    assert screen([EXAMPLE], "off") == [EXAMPLE]
    assert screen(["What is a CCG?"], "block") == ["What is a CCG?"]


def test_an_unknown_mode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="block, redact, off"):
        screen(["x"], "maybe")


def test_earlier_user_turns_are_checked_and_assistant_turns_only_masked() -> None:
    history = [Turn("user", "My NHS number is 943 476 5919"), Turn("assistant", "Sorry.")]
    with pytest.raises(PersonalDataError, match="NHS number"):
        screen_turns("What next?", history, "block")
    quoted = [Turn("user", "Who do I contact?"), Turn("assistant", "Write to a.b@nhs.net [1]")]
    question, turns = screen_turns("And then?", quoted, "block")
    assert question == "And then?"
    assert turns == [quoted[0], Turn("assistant", "Write to [email address] [1]")]
    question, turns = screen_turns(EXAMPLE, history, "redact")
    assert question == redact(EXAMPLE)
    assert turns[0] == Turn("user", "My NHS number is [NHS number]")


@pytest.mark.parametrize(
    ("raw", "mode"), [(None, "block"), ("block", "block"), ("redact", "redact"), ("off", "off")]
)
def test_the_setting(raw: str | None, mode: str) -> None:
    env = {} if raw is None else {"ASSISTANT_PII_CHECK": raw}
    assert Settings.from_env(env).pii_check == mode


def test_a_bad_setting_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_PII_CHECK must be block, redact or off"):
        Settings.from_env({"ASSISTANT_PII_CHECK": "maybe"})


# -- no false alarm on real questions --------------------------------------------------------


def _eval_questions() -> list[str]:
    questions: list[str] = []
    for path in sorted(EVAL.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            case = json.loads(line)
            if "question" in case:
                questions.append(case["question"])
            questions.extend(turn["question"] for turn in case.get("turns", ()))
    return questions


def test_no_question_of_the_evaluation_is_flagged() -> None:
    questions = _eval_questions()
    assert len(questions) > 350
    flagged = {q: personal_data_kinds(q) for q in questions if find_personal_data(q)}
    assert flagged == {}
