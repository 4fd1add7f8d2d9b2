from mixer.attributes.dictionary import GLOBAL_INDEX, GLOBAL_WORD_COUNT, GLOBAL_WORDS
from tests.shared_data import require_shared


def test_global_dictionary_has_istio_1_4_length() -> None:
    assert GLOBAL_WORD_COUNT == 222
    assert len(GLOBAL_WORDS) == 222


def test_sample_indexes_match_istio() -> None:
    assert GLOBAL_WORDS[0] == "source.ip"
    assert GLOBAL_WORDS[24] == "request.time"
    assert GLOBAL_WORDS[31] == ":authority"
    assert GLOBAL_WORDS[90] == "GET"
    assert GLOBAL_WORDS[93] == "envoy"
    assert GLOBAL_WORDS[150] == "destination.ip"
    assert GLOBAL_WORDS[174] == "source.principal"
    assert GLOBAL_WORDS[219] == "inbound"
    assert GLOBAL_WORDS[221] == "context.proxy_version"


def test_quoted_entries_keep_their_quotes() -> None:
    assert GLOBAL_WORDS[94] == "'200'"
    assert GLOBAL_WORDS[111:113] == ("'0'", "'1'")
    assert GLOBAL_WORDS[218] == '"-"'
    assert GLOBAL_WORDS[134:137] == (
        "0",
        "1",
        "200",
    )  # the unquoted status codes are separate words


def test_dictionary_equals_the_line_based_parse_of_istios_yaml() -> None:
    source = require_shared("corpus/istio/api/global_dictionary.yaml").read_text()
    words = [line[1:].strip() for line in source.splitlines() if line.startswith("-")]
    assert tuple(words) == GLOBAL_WORDS


def test_index_points_back_to_the_word() -> None:
    for word, index in GLOBAL_INDEX.items():
        assert GLOBAL_WORDS[index] == word
