"""Sources files as operators write them: every row stands alone (no models, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from convoice.media.sources import SourcesError, read_sources
from convoice.models.licence import canonical_license, licence_problem

GOOD = "https://v.example/{}"


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def test_every_bad_row_is_skipped_with_its_line_and_reason(tmp_path: Path) -> None:
    text = (
        "\n"  # line 1: blank
        "note;licence;url\n"  # 2: the header, columns in another order, semicolons
        "first;CC BY 4.0;https://v.example/1\n"  # 3
        ";All rights reserved;https://v.example/2\n"  # 4: not CC
        ";CC BY 5.0;https://v.example/3\n"  # 5: looks CC, is not
        ";Beerware;https://v.example/4\n"  # 6: unknown
        "\n"  # 7: blank
        ";CC0;www.example.com/video.mp4\n"  # 8: no scheme
        ";CC0;http://exa mple.com/v\n"  # 9: a space
        ";CC0;\n"  # 10: empty url
        "first;CC BY 4.0;https://v.example/1\n"  # 11: the same row as line 3
        "again;https://creativecommons.org/licenses/by-sa/4.0/;https://v.example/1\n"  # 12
        ";;https://v.example/5\n"  # 13: none declared: the platform must say
    )
    read = read_sources(_write(tmp_path / "s.csv", text, bom=True), run_id="r1")
    assert [(s.line, s.url, s.declared_license) for s in read.sources] == [
        (3, GOOD.format(1), "CC BY 4.0"),
        (12, GOOD.format(1), "https://creativecommons.org/licenses/by-sa/4.0/"),
        (13, GOOD.format(5), None),
    ]
    assert [(s.line, s.reason_code) for s in read.rejected] == [
        (4, "not_creative_commons"),
        (5, "unknown_licence"),
        (6, "unknown_licence"),
        (8, "malformed_url"),
        (9, "malformed_url"),
        (10, "malformed_url"),
        (11, "duplicate_row"),
    ]
    assert all(s.run_id == "r1" and s.source_url.endswith("s.csv") for s in read.rejected)
    assert "line 3" in read.rejected[-1].reason
    assert "All rights reserved" in read.rejected[0].reason


def test_a_file_without_header_is_url_license_note(tmp_path: Path) -> None:
    text = "https://v.example/1\tCC-BY-SA-4.0\tone\r\nhttps://v.example/2\tcc0\r\n"
    read = read_sources(_write(tmp_path / "s.tsv", text))
    assert [(s.url, s.declared_license, s.note, s.line) for s in read.sources] == [
        (GOOD.format(1), "CC-BY-SA-4.0", "one", 1),
        (GOOD.format(2), "cc0", "", 2),
    ]


def test_a_quoted_row_over_two_lines_keeps_the_next_line_number(tmp_path: Path) -> None:
    text = 'url,license,note\nhttps://v.example/1,CC0,"two\nlines"\nnot a url,CC0,x\n'
    read = read_sources(_write(tmp_path / "s.csv", text))
    assert read.sources[0].note == "two\nlines"
    assert [(s.line, s.reason_code) for s in read.rejected] == [(4, "malformed_url")]


def test_a_file_that_is_not_utf8_is_bad_usage(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes("url,license\nhttps://v.example/é,CC0\n".encode("latin-1"))
    with pytest.raises(SourcesError, match="not UTF-8"):
        read_sources(path)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("CC-BY-4.0", "CC-BY-4.0"),
        ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
        ("CC BY 4.0", "CC-BY-4.0"),
        ("CC BY-NC-SA 3.0", "CC-BY-NC-SA-3.0"),
        ("Creative Commons Attribution 4.0 International", "CC-BY-4.0"),
        ("Creative Commons Attribution-ShareAlike 4.0 International License", "CC-BY-SA-4.0"),
        ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
        ("http://creativecommons.org/licenses/by-nd/2.0/deed.en", "CC-BY-ND-2.0"),
        ("creativecommons.org/licenses/by/3.0/us/", "CC-BY-3.0-US"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        ("CC0", "CC0-1.0"),
        ("Public Domain Mark 1.0", "CC-PDM-1.0"),
    ],
)
def test_licences_are_normalised(raw: str, canonical: str) -> None:
    assert canonical_license(raw) == canonical
    assert licence_problem(raw) is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("All rights reserved", "not_creative_commons"),
        ("Standard YouTube License", "not_creative_commons"),
        ("MIT", "not_creative_commons"),
        ("© 2024 ACME", "not_creative_commons"),
        ("CC BY 5.0", "unknown_licence"),
        ("CC BY-SA-ND 4.0", "unknown_licence"),
        ("free to use", "unknown_licence"),
    ],
)
def test_licences_that_cannot_be_used_say_why(raw: str, code: str) -> None:
    problem = licence_problem(raw)
    assert problem is not None and problem[0] == code and repr(raw) in problem[1]


def test_the_skipped_view_keeps_every_bad_row_apart_from_its_url(tmp_path: Path) -> None:
    from convoice.records import SkippedItem
    from convoice.storage import Store

    store = Store(str(tmp_path / "home"))
    rows = [
        SkippedItem("s.csv", GOOD.format(1), "", "not_creative_commons", "x", "r1", "t1", 3),
        SkippedItem("s.csv", GOOD.format(1), "", "duplicate_row", "x", "r1", "t1", 4),
        SkippedItem("s.csv", "", "", "malformed_url", "empty url", "r1", "t1", 5),
        SkippedItem("s.csv", "", "", "malformed_url", "empty url", "r1", "t1", 6),
        SkippedItem(GOOD.format(1), GOOD.format(1), "", "unreachable", "x", "r1", "t1"),
        SkippedItem(GOOD.format(1), GOOD.format(1), "", "no_speech", "x", "r2", "t2"),
    ]
    store.record_skipped(rows)
    view = [(r["line"], r["reason_code"]) for r in store.skipped().to_pylist()]
    assert sorted(view, key=str) == sorted(
        [(3, "not_creative_commons"), (4, "duplicate_row"), (5, "malformed_url"),
         (6, "malformed_url"), (None, "no_speech")], key=str,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("config", "says"),
    [("[asr\n", "Expected ']'"), ('[asr]\nbatch_size = "x"\n', "asr.batch_size='x'")],
)
def test_a_bad_settings_file_stops_ingest_with_a_message(
    tmp_path: Path, config: str, says: str
) -> None:
    from typer.testing import CliRunner

    from convoice.cli.root import app

    (tmp_path / "config.toml").write_text(config)
    sources = _write(tmp_path / "s.csv", "url,licence\nhttps://v.example/1,CC0\n")
    result = CliRunner().invoke(app, ["ingest", str(sources), "--home", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output


def test_paths_name_local_media_and_author_and_page_columns_attribute_it(tmp_path: Path) -> None:
    (tmp_path / "talks").mkdir()
    (tmp_path / "one.mp3").write_bytes(b"")
    text = (
        "url,license,creator,webpage\n"
        "./talks,CC BY 4.0,Ada Lovelace,https://p.example/talks\n"  # 2: a folder beside it
        "one.mp3,CC0,,\n"  # 3: a bare name of a file that is there
        f"{(tmp_path / 'talks').as_uri()},CC BY 4.0,,\n"  # 4: line 2 again, as a file:// URL
        "./gone.mp4,CC0,,\n"  # 5: nothing there
        "two.mp3,CC0,,\n"  # 6: a bare name of nothing: not a path, a URL without a scheme
        "https://v.example/1,CC BY 4.0,Grace Hopper,\n"  # 7
    )
    read = read_sources(_write(tmp_path / "s.csv", text))
    assert [(s.line, s.url, s.author, s.page) for s in read.sources] == [
        (2, (tmp_path / "talks").as_uri(), "Ada Lovelace", "https://p.example/talks"),
        (3, (tmp_path / "one.mp3").as_uri(), "", ""),
        (7, GOOD.format(1), "Grace Hopper", ""),
    ]
    rejected = {s.line: (s.reason_code, s.reason) for s in read.rejected}
    assert rejected[5] == ("unreachable", f"no such file or folder: {tmp_path / 'gone.mp4'}")
    assert rejected[6][0] == "malformed_url" and "or a path: ./two.mp3" in rejected[6][1]
    assert rejected[4] == ("duplicate_row", "the same row as line 2")
    assert set(rejected) == {4, 5, 6}


def test_a_headerless_file_may_begin_with_a_bare_name_beside_it(tmp_path: Path) -> None:
    """The first row is a data row when it names a file beside the sources file, whatever
    the current directory is (the rows' own paths start there too)."""
    (tmp_path / "talk.mp3").write_bytes(b"")
    read = read_sources(_write(tmp_path / "s.csv", "talk.mp3,CC0\n"))
    assert [(s.line, s.url) for s in read.sources] == [(1, (tmp_path / "talk.mp3").as_uri())]
