"""Language per clip and model per language: real Whisper on real synthetic speech."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from convoice.config import ConfigError, load_settings
from convoice.engines import loaders
from convoice.flows.ingest import ingest_flow
from convoice.media.audio import Audio
from convoice.models import asr, lang_eval, language, language_cuts
from convoice.models.from_settings import asr_options
from convoice.records import Region
from convoice.storage import Store
from convoice.synth import inventory, multilingual
from convoice.synth.serve import serve_directory, write_sources_csv
from convoice.tasks import stages

SR = 16000


def _recording(lines: list[tuple[str, str, str]]) -> tuple[np.ndarray, list[Region]]:
    pieces, regions, cursor = [], [], 0.0
    for speaker, lang, text in lines:
        audio = multilingual.speak(speaker, lang, text)
        pieces += [audio, np.zeros(SR // 2, np.float32)]
        regions.append(Region(cursor, cursor + len(audio) / SR))
        cursor += len(audio) / SR + 0.5
    return np.concatenate(pieces), regions


LINES = [
    ("flite-slt", "en", "Thank you for having me on the show today."),
    ("espeak-m3", "de", "Ich bin in einer kleinen Stadt an der Küste aufgewachsen."),
    ("flite-slt", "en", "Could you tell our listeners how it all began?"),
    ("espeak-m3", "de", "Wir haben das Projekt mit drei Freunden und einem alten Laptop begonnen."),
]


def test_each_clip_is_transcribed_in_its_own_language() -> None:
    audio, regions = _recording(LINES)
    model = loaders.whisper_model()
    out = asr.transcribe_clips(model, audio, regions, asr.AsrOptions(), speakers=[0, 1, 0, 1])
    assert [t.language if t else "" for t in out] == [lang for _, lang, _ in LINES]
    for t, (_, lang, text) in zip(out, LINES, strict=True):
        assert t is not None and 0.0 < t.language_probability <= 1.0
        assert lang_eval.error_count(text, t.text, lang).wer < 0.3, (text, t.text)
    pinned = asr.transcribe_clips(model, audio, regions, asr.AsrOptions(language="en"))
    assert {t.language for t in pinned if t} == {"en"}  # `[asr] language` pins one for all


def test_short_detection_costs_less_than_padded_and_agrees_when_sure() -> None:
    audio, regions = _recording(LINES)
    model = loaders.whisper_model()
    short = language.detect_languages(
        model, audio, regions, language.DetectOptions(min_probability=0.0)
    )
    padded = language.detect_languages(
        model, audio, regions, language.DetectOptions(method="padded")
    )
    assert {g.method for g in short} == {"short"} and {g.method for g in padded} == {"padded"}
    assert [g.language for g in padded] == ["en", "de", "en", "de"]
    sure = [(s, p) for s, p in zip(short, padded, strict=True) if s.probability >= 0.8]
    assert sure and all(s.language == p.language for s, p in sure)
    with pytest.raises(language.LanguageError, match="use one of"):
        language.detect_languages(model, audio, regions, language.DetectOptions(method="x"))


def test_an_unsure_clip_leans_on_its_speaker_but_a_sure_switch_stands() -> None:
    sure_de = {"de": 0.95, "nl": 0.05}
    unsure = {"nl": 0.45, "de": 0.40, "en": 0.15}
    sure_en = {"en": 0.97, "de": 0.03}
    dists = [sure_de, sure_de, unsure, sure_en]
    guesses = [language._top(d, "short") for d in dists]
    priors = language.speaker_priors(dists, [0, 0, 0, 0], [3.0, 3.0, 2.0, 2.0])
    pooled = language._pool(guesses, dists, [0, 0, 0, 0], priors, 2.0)
    assert [g.language for g in pooled] == ["de", "de", "de", "en"]
    assert pooled[2].method == "speaker" and pooled[3].method == "short"
    alone = language._pool(guesses, dists, [0, 0, 0, 0], priors, 0.0)
    assert [g.language for g in alone] == ["de", "de", "nl", "en"]  # weight 0: no prior


def test_the_speaker_prior_is_a_sum_of_log_probabilities() -> None:
    prior = language.speaker_priors([{"de": 1.0}, {"en": 1.0}], [0, 0], [3.0, 1.0])[0]
    assert prior == {"de": 0.75, "en": 0.25}  # a mixture: a bilingual speaker keeps both
    joint = language.combine({"de": 0.2, "en": 0.8}, prior, 2.0)
    # 0.2 * 0.75^2 = 0.1125 against 0.8 * 0.25^2 = 0.05
    assert joint["de"] == pytest.approx(0.1125 / 0.1625)
    assert language.combine({"de": 0.2, "en": 0.8}, prior, 0.0)["en"] == pytest.approx(0.8)
    with pytest.raises(language.LanguageError, match="0 or more"):
        language.combine({"de": 1.0}, prior, -1.0)


# Accented English from the tuning half's voices and the corpus's English sentences. Which of
# them Whisper's detection mishears (another language first, English second) moves between
# machines: session 23's fresh one (ctranslate2 4.8.5, espeak-ng 1.51+dfsg-10+deb12u2) heard
# the first line as English (0.46, Welsh 0.40), which the machines before heard as Welsh; the
# cause was not found. The test takes the lines misheard here and needs at least one.
ACCENTED = [
    ("mb-de6", "en", "I think the weather will be better next week."),
    ("mb-de6", "en", "I usually drink tea in the morning and coffee after lunch."),
    ("mb-de6", "en", "The museum is closed on Mondays but open late on Fridays."),
    ("mb-nl2", "en", "I usually drink tea in the morning and coffee after lunch."),
]
HEARD_PADDED = ("mb-nl2", "en", "The museum is closed on Mondays but open late on Fridays.")


def test_a_clip_heard_as_another_language_takes_its_runner_up_when_whisper_reads_it_better() -> (
    None
):
    model = loaders.whisper_model()
    on = asr.AsrOptions(detect=language.DetectOptions(decode_runner_up=0.1))
    # The Dutch voice's English (2.8 s) was heard as Dutch, English second, when a clip was
    # heard at its own length; with silence after it up to 3 s detection alone hears English.
    audio, regions = _recording([HEARD_PADDED])
    assert language.detect_languages(model, audio, regions, on.detect)[0].language == "en"
    misheard = 0
    for line in ACCENTED:
        audio, regions = _recording([line])
        alone = language.detect_languages(model, audio, regions, on.detect)[0]
        if alone.language == "en" or alone.runner_up != "en" or alone.runner_up_probability < 0.1:
            continue  # heard right, or English too far down: not the case under test
        misheard += 1
        before = asr.transcribe_clips(model, audio, regions, asr.AsrOptions())[0]
        after = asr.transcribe_clips(model, audio, regions, on)[0]
        assert before is not None and before.language == alone.language  # off: as detected
        assert after is not None and after.language == "en", after
        assert after.language_probability == alone.runner_up_probability
        assert lang_eval.error_count(line[2], after.text, "en").wer < 0.3, after.text
        assert asr.word_score(after.words) > asr.word_score(before.words) + asr.DECODE_MARGIN
    assert misheard >= 1, "no accented line was misheard with English second: pick other lines"
    # A clip sure of its language is not decoded again: its runner-up is far below 0.1.
    audio, regions = _recording([LINES[0]])
    sure = asr.transcribe_clips(model, audio, regions, on)[0]
    assert sure is not None and sure.language == "en" and sure.language_probability > 0.9
    with pytest.raises(language.LanguageError, match="0 to 1"):
        language.detect_languages(
            model, audio, regions, language.DetectOptions(decode_runner_up=2.0)
        )


# A Dutch mbrola voice (tuning half) reading English, alone: heard as Dutch (0.90), English
# second at 0.06, under the runner-up opt-in's 0.1; Dutch words for it ("We moesten zich ...").
TWELVE = ("mb-nl2", "en", "We moved to the city when I was twelve years old.")


def test_an_unsure_clip_takes_the_language_whose_words_whisper_reads_likeliest() -> None:
    model = loaders.whisper_model()
    audio, regions = _recording([TWELVE])
    on = asr.AsrOptions(detect=language.DetectOptions(decode_below=0.95))
    guess = language.detect_languages(model, audio, regions, on.detect)[0]
    assert guess.language == "nl" and guess.probability < 0.95, guess  # the language head
    assert "en" in dict(guess.alternatives) and guess.runner_up_probability < 0.1
    before = asr.transcribe_clips(model, audio, regions, asr.AsrOptions())[0]
    assert before is not None and before.language == "nl", before  # as detected
    runner_up = asr.AsrOptions(detect=language.DetectOptions(decode_runner_up=0.1))
    assert asr.transcribe_clips(model, audio, regions, runner_up)[0] == before  # 0.06 < 0.1
    after = asr.transcribe_clips(model, audio, regions, on)[0]
    assert after is not None and after.language == "en", after
    assert after.language_probability == dict(guess.alternatives)["en"]
    assert lang_eval.error_count(TWELVE[2], after.text, "en").wer < 0.3, after.text
    assert asr.word_score(after.words) > asr.word_score(before.words) + asr.DECODE_MARGIN
    # A clip sure of its language (over 0.95) is transcribed once, in it.
    audio, regions = _recording([LINES[0]])
    sure = asr.transcribe_clips(model, audio, regions, on)[0]
    assert sure is not None and sure.language == "en" and sure.language_probability > 0.95
    with pytest.raises(language.LanguageError, match="0 to 1"):
        language.detect_languages(model, audio, regions, language.DetectOptions(decode_below=2.0))
    with pytest.raises(language.LanguageError, match="1 or more"):
        language.detect_languages(model, audio, regions, language.DetectOptions(decode_top=0))


def test_whisper_batch_is_four_windows_and_the_language_pass_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = asr_options(load_settings(home=str(tmp_path)))
    assert (options.batch_size, options.detect.batch_size) == (4, 8)
    monkeypatch.setenv("CONVOICE_ASR__BATCH_SIZE", "2")  # memory: the language pass is unmoved
    options = asr_options(load_settings(home=str(tmp_path)))
    assert (options.batch_size, options.detect.batch_size) == (2, 8)


def test_fewer_windows_at_once_give_the_same_transcripts() -> None:
    """[asr] batch_size bounds memory only: the clips read the same at 4 windows as at 8."""
    import soundfile as sf

    from convoice.synth.recordings import pyannote_sample

    wav, _ = pyannote_sample()
    samples, rate = sf.read(str(wav), dtype="float32")
    assert rate == 16000
    audio = np.tile(samples[: 25 * rate], 10)  # ten 25 s clips: two or three batches
    regions = [Region(25.0 * i + 0.2, 25.0 * i + 24.8) for i in range(10)]
    model = loaders.whisper_model("base")
    first, second = (
        asr.transcribe_clips(model, audio, regions, asr.AsrOptions(batch_size=b, language="en"))
        for b in (8, 4)
    )
    assert [t.text if t else None for t in first] == [t.text if t else None for t in second]
    assert first == second and any(t is not None for t in first)


def test_runner_up_decoding_is_off_by_default_and_set_in_asr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detect = asr_options(load_settings(home=str(tmp_path))).detect
    assert (detect.decode_runner_up, detect.decode_below) == (0.0, 0.0)
    assert (detect.decode_top, detect.decode_speaker) == (3, True)
    monkeypatch.setenv("CONVOICE_ASR__LANGUAGE_DECODE_RUNNER_UP", "0.1")
    monkeypatch.setenv("CONVOICE_ASR__LANGUAGE_DECODE_BELOW", "0.95")
    detect = asr_options(load_settings(home=str(tmp_path))).detect
    assert (detect.decode_runner_up, detect.decode_below) == (0.1, 0.95)


PERSIAN = [("espeak-m5", "fa", text) for text in multilingual.sentences()["fa"][:6]]


def test_a_voice_heard_as_latin_clip_by_clip_is_persian_over_a_30_s_window() -> None:
    """espeak-ng's Persian (a tuning-half voice): most of its short clips are taken for Latin
    and the mean of them with it (at most 1 of 6 Persian); one padded window of the speaker's
    clips hears Persian, and with it half or more of them are Persian and none is Latin.

    How many exactly depends on the CPU: 4 or more of 6 on the machines of sessions 29-31,
    3 (two Georgian, one Basque) on an AVX2 machine without AVX-512, whatever the thread
    count (session 32's note)."""
    audio, regions = _recording(PERSIAN)
    model = loaders.whisper_model()
    speakers = [0] * len(PERSIAN)
    before = language.DetectOptions(window_s=0, weights=())
    old = language.detect_languages(model, audio, regions, before, speakers)
    opt_in = language.DetectOptions(window_s=30.0, speaker_weight=1.0)
    new = language.detect_languages(model, audio, regions, opt_in, speakers)
    window = language.window_priors(model, audio, regions, speakers, opt_in)[0]
    assert max(window, key=lambda k: window[k]) == "fa"
    assert sum(g.language == "fa" for g in old) <= 1
    assert sum(g.language == "fa" for g in new) >= 3  # of 6
    assert not any(g.language == "la" for g in new)
    for bad in (language.DetectOptions(window_s=31), language.DetectOptions(weights=(("la", 0),))):
        with pytest.raises(language.LanguageError):
            language.detect_languages(model, audio, regions, bad, speakers)


def test_a_clips_language_does_not_depend_on_the_clips_detected_with_it() -> None:
    # A short German clip alone, then batched with a long clip and with another short one
    # of its own length: padding it to a long neighbour used to change what Whisper heard.
    audio, regions = _recording(LINES[1:2] + LINES[3:4] + LINES[0:1])
    short, long_ = Region(regions[0].start, regions[0].start + 1.5), regions[1]
    twin = Region(regions[2].start, regions[2].start + 1.5)  # same length, another clip
    model = loaders.whisper_model()
    options = language.DetectOptions(pool_speakers=False)
    alone = language.detect_languages(model, audio, [short], options)[0]
    with_long = language.detect_languages(model, audio, [short, long_], options)[0]
    with_twin = language.detect_languages(model, audio, [twin, short, long_], options)[1]
    assert (with_long.language, with_long.probability) == (alone.language, alone.probability)
    assert (with_twin.language, with_twin.probability) == (alone.language, alone.probability)
    assert (
        language._detect(model, audio, [short, long_], options, False)[0]
        == (language._detect(model, audio, [short], options, False)[0])
    )


def test_a_tight_short_clip_is_heard_with_silence_after_it() -> None:
    # Cut exactly at its speech, espeak-ng's German sentence of 2.6 s alone is Welsh (0.22);
    # with silence after it up to 3 s (what Whisper was trained on) it is German (0.99).
    audio, regions = _recording(LINES)
    model = loaders.whisper_model()
    tight = language.DetectOptions(pool_speakers=False, min_s=0.0)
    assert language.detect_languages(model, audio, regions, tight)[1].language != "de"
    heard = language.detect_languages(model, audio, regions, language.DetectOptions(
        pool_speakers=False))  # fmt: skip
    assert [g.language for g in heard] == [lang for _, lang, _ in LINES]
    with pytest.raises(language.LanguageError, match="least clip length"):
        language.detect_languages(model, audio, regions, language.DetectOptions(min_s=-1))


def test_language_weights_scale_a_language_before_the_decision() -> None:
    audio, regions = _recording(PERSIAN[:2])
    model = loaders.whisper_model()
    plain = language._detect(model, audio, regions, language.DetectOptions(weights=()), False)
    scaled = language._detect(model, audio, regions, language.DetectOptions(), False)
    for p, s in zip(plain, scaled, strict=True):
        # Latin at a tenth of its odds against every other language, renormalised
        ratio = (s["la"] / s["fa"]) / (p["la"] / p["fa"])
        assert ratio == pytest.approx(0.1, rel=1e-3)
        assert sum(s.values()) == pytest.approx(1.0)


SWITCH = [  # one mbrola voice of the tuning half: German with one English question
    ("mb-de6", "de", "Ich bin in einer kleinen Stadt an der Küste aufgewachsen."),
    ("mb-de6", "de", "Wir haben das Projekt mit drei Freunden begonnen."),
    ("mb-de6", "en", "Could you tell our listeners how it all began?"),
    ("mb-de6", "de", "Genau."),
    ("mb-de6", "de", "Na ja, gut."),
    ("mb-de6", "de", "Am Abend gehen wir oft am Fluss spazieren."),
    ("mb-de6", "de", "Jawohl."),
]


def test_short_clips_take_their_speakers_language_and_a_switch_stands() -> None:
    audio, regions = _recording(SWITCH)
    model = loaders.whisper_model()
    alone = language.detect_languages(
        model, audio, regions, language.DetectOptions(pool_speakers=False)
    )
    pooled = language.detect_languages(
        model, audio, regions, language.DetectOptions(), [0] * len(SWITCH)
    )
    truth = [lang for _, lang, _ in SWITCH]
    assert [g.language for g in pooled] == truth
    assert [g.language for g in alone] != truth  # the short clips alone: other languages
    assert {g.method for g, a in zip(pooled, alone, strict=True) if g.language != a.language} == {
        "speaker"
    }
    assert pooled[2].probability < 0.99  # the English question: its own, not its speaker's


def test_model_per_language_from_settings(tmp_path: Path) -> None:
    assert language.choose_model("", {}, "en") == language.DEFAULT_MODEL
    assert language.choose_model("", {"ru": "small"}, "ru") == "small"
    assert language.choose_model("/models/large", {"ru": "small"}, "de") == "/models/large"
    env = load_settings(home=str(tmp_path), environ={"CONVOICE_ASR__MODELS": "ru=small, de=/m/de"})
    assert language.choose_model("", env.asr.models, "de") == "/m/de"  # environment form
    with pytest.raises(ConfigError, match="key=value"):
        load_settings(home=str(tmp_path), environ={"CONVOICE_ASR__MODELS": "ru:small"})
    (tmp_path / "config.toml").write_text('[asr]\nmodels = { ru = "small" }\nlanguage = ""\n')
    settings = load_settings(home=str(tmp_path))
    assert language.choose_model(settings.asr.model, settings.asr.models, "ru") == "small"
    assert loaders.whisper_name("") == loaders.whisper_name("base") == loaders.WHISPER_NAME
    detect = stages.asr_options(settings).detect
    assert (detect.window_s, detect.weights, detect.speaker_weight) == (0.0, (("la", 0.1),), 2.0)
    assert detect.min_s == 3.0
    environ = {
        "CONVOICE_ASR__LANGUAGE_WEIGHTS": "la=1, ht=0.5",
        "CONVOICE_ASR__LANGUAGE_WINDOW_S": "30",
    }
    detect = stages.asr_options(load_settings(home=str(tmp_path), environ=environ)).detect
    assert (detect.window_s, dict(detect.weights)) == (30.0, {"la": 1.0, "ht": 0.5})


def test_scoring_counts_characters_for_chinese_and_folds_persian_spelling() -> None:
    assert lang_eval.tokens("谢谢你，朋友。", "zh") == ["谢", "谢", "你", "朋", "友"]
    assert lang_eval.error_count("می‌خوانم کتاب", "میخوانم كتاب", "fa").errors == 0
    assert lang_eval.error_count("Thank you!", "thank you", "en").errors == 0


@pytest.mark.usefixtures("prefect_harness")
def test_an_english_german_interview_ingested_end_to_end(tmp_path: Path) -> None:
    corpus = multilingual.make_corpus(tmp_path / "corpus", turns=8, only=["interview-en-de"])
    (episode,) = corpus.episodes
    home = tmp_path / "home"
    home.mkdir()
    with serve_directory(corpus.root) as base_url:
        sources = write_sources_csv(corpus, base_url, home / "sources.csv")
        ingest_flow(sources_file=str(sources), home=str(home))
    clips = Store.open(load_settings(home=str(home))).clips().to_pylist()
    refs = multilingual.references(corpus)[episode.episode_id]
    assert clips and {lang_eval.clip_language(c, refs) for c in clips} == {"en", "de"}
    for c in clips:
        assert c["language"] == lang_eval.clip_language(c, refs), (c["text"], c["language"])
        assert json.loads(c["models"])["asr"] == loaders.WHISPER_NAME
    scores = lang_eval.score_languages(clips, {clips[0]["recording_id"]: refs})
    assert scores["en"].wer_all.words > 10 and scores["en"].wer_all.wer < 0.15
    assert scores["de"].wer_all.wer < 0.5


def test_the_corpus_halves_share_no_voice_and_use_no_reserved_one() -> None:
    from convoice.synth import multilingual_voices as mv

    reserved = {"mb-de4", "mb-de5", "mb-fr1", "mb-fr4"}
    assert not reserved & {v.name for v in mv.voices()}
    halves = mv.halves()
    assert set(halves.values()) == {"tune", "report"}
    assert halves["ru_nsh"] == inventory.halves()["ru_nsh"]  # same half as in the voice split
    people = {i.name: i for i in inventory.all_identities() if i.real}
    for half in ("tune", "report"):
        casts = multilingual.casts(half)
        synthetic = {k: cast for k, cast in casts.items() if not k.startswith("real-")}
        speakers = {name for cast in synthetic.values() for name, _ in cast}
        assert {halves[s] for s in speakers} == {half}, half
        assert {f"mono-{lang}" for lang in multilingual.ROADMAP} <= set(casts)
        interviews = [k for k, cast in casts.items() if k.startswith("interview-")]
        assert interviews and all(len({c[1][0] for c in casts[k]}) == 2 for k in interviews)
        assert any(k.startswith("switch-") for k in casts)
        for cast in synthetic.values():
            for name, langs in cast:
                assert set(langs) <= set(mv.by_name(name).languages), (name, langs)
        real = {k: cast for k, cast in casts.items() if k.startswith("real-")}
        assert len(real) >= 3, half  # every non-English real person of the half, as a guest
        for (host, host_langs), (guest, guest_langs) in real.values():
            assert inventory.halves()[host] == inventory.halves()[guest] == half
            assert host_langs == [people[host].language] == ["en"]
            assert guest_langs == [people[guest].language] != ["en"]


def test_a_real_person_s_lines_are_their_own_words_joined_to_a_sentence() -> None:
    lines = multilingual.real_lines("polish_m3")  # one word per recording
    assert len(lines) >= 5
    for text, audio in lines.items():
        assert len(text.split()) >= 2 and len(audio) >= multilingual.REAL_LINE_S * SR, text
        assert set(text.split()) <= {"nie", "oddaj", "podaj", "stop", "tak", "trzymaj"}, text
    swedish = multilingual.real_lines("nst_se016")
    assert next(iter(swedish)).startswith("Testar en två tre")


def test_a_transcript_bar_per_language_only_raises_the_global_one(tmp_path: Path) -> None:
    from convoice.config import RoutingSettings
    from convoice.models import routing

    cfg = RoutingSettings(
        min_transcript_confidence=0.8, transcript_confidence_by_language={"tr": 0.95, "en": 0.5}
    )
    assert routing.transcript_bar(cfg, "tr") == 0.95
    assert routing.transcript_bar(cfg, "en") == 0.8 and routing.transcript_bar(cfg, "de") == 0.8
    key = "CONVOICE_ROUTING__TRANSCRIPT_CONFIDENCE_BY_LANGUAGE"
    env = load_settings(home=str(tmp_path), environ={key: "tr=0.9, nl=0.97"})
    assert routing.transcript_bar(env.routing, "nl") == 0.97
    with pytest.raises(ConfigError, match="key=value"):
        load_settings(home=str(tmp_path), environ={key: "tr"})


def test_an_operator_s_transcript_bars_are_merged_over_the_defaults(tmp_path: Path) -> None:
    """`{tr = 0.95}` adds Turkish and keeps English at 0.92 (it replaced the whole table,
    putting English back at 0.80); English is lowered only by naming it."""
    from convoice.models import routing

    (tmp_path / "config.toml").write_text(
        "[routing]\ntranscript_confidence_by_language = { tr = 0.95 }\n"
    )
    cfg = load_settings(home=str(tmp_path), environ={}).routing
    assert cfg.transcript_confidence_by_language == {"en": 0.92, "tr": 0.95}
    assert routing.transcript_bar(cfg, "en") == 0.92 and routing.transcript_bar(cfg, "tr") == 0.95
    key = "CONVOICE_ROUTING__TRANSCRIPT_CONFIDENCE_BY_LANGUAGE"
    both = load_settings(home=str(tmp_path), environ={key: "nl=0.97"}).routing
    assert both.transcript_confidence_by_language == {"en": 0.92, "tr": 0.95, "nl": 0.97}
    (tmp_path / "config.toml").write_text(
        "[routing]\ntranscript_confidence_by_language = { en = 0.8 }\n"
    )
    lowered = load_settings(home=str(tmp_path), environ={}).routing
    assert routing.transcript_bar(lowered, "en") == 0.8
    assert load_settings(home=str(tmp_path), environ={}).asr.language_weights == {"la": 0.1}
    (tmp_path / "config.toml").write_text("[asr]\nlanguage_weights = { fa = 2.0 }\n")
    weights = load_settings(home=str(tmp_path), environ={}).asr.language_weights
    assert weights == {"la": 0.1, "fa": 2.0}  # it replaced the table: Latin back at 1
    (tmp_path / "config.toml").write_text("[asr]\nlanguage_weights = { la = 1.0 }\n")
    assert load_settings(home=str(tmp_path), environ={}).asr.language_weights == {"la": 1.0}
    (tmp_path / "config.toml").write_text(
        '[routing]\ntranscript_confidence_by_language = { tr = "high" }\n'
    )
    with pytest.raises(ConfigError, match="must be a number"):
        load_settings(home=str(tmp_path), environ={})


def test_fitted_bars_are_the_lowest_that_meet_the_wer_target() -> None:
    refs = [
        lang_eval.RefSentence(0.0, 2.0, "one two three four", "nl"),
        lang_eval.RefSentence(3.0, 5.0, "five six seven eight", "nl"),
    ]

    def clip(start: float, words: str, score: float) -> dict[str, object]:
        ws = [
            {"word": w, "start": 0.1 + i * 0.4, "end": 0.4 + i * 0.4}
            for i, w in enumerate(words.split())
        ]
        return {"recording_id": "r", "start": start, "end": start + 2.0, "words": ws,
                "transcript_score_raw": score, "review_reasons": []}  # fmt: skip

    clips = [clip(0.0, "one two three four", 0.93), clip(3.0, "five sex seven ate", 0.85)]
    (fit,) = lang_eval.fit_transcript_bars(clips, {"r": refs}, 0.08).values()
    assert (fit.bar, fit.wer, fit.accepted_words, fit.words) == (0.86, 0.0, 4, 8)
    clips[0]["review_reasons"] = ["uncertain_speaker"]  # held by another reason: no bar helps
    assert lang_eval.fit_transcript_bars(clips, {"r": refs}, 0.08)["nl"].bar is None


def test_a_clip_is_cut_where_its_language_changes(tmp_path: Path) -> None:
    lines = [  # one voice, one turn, under [clips] max_s: one clip unless cut
        ("mb-de6", "de", "Wir haben das Projekt mit drei Freunden begonnen."),
        ("mb-de6", "en", "Could you tell our listeners how it all began?"),
    ]
    audio, regions = _recording(lines)
    samples = np.concatenate([np.zeros(SR // 2, np.float32), audio])
    regions = [Region(r.start + 0.5, r.end + 0.5) for r in regions]
    defaults = load_settings(home=str(tmp_path))
    assert not defaults.asr.language_cuts  # opt-in (README: Languages)
    settings = dataclasses.replace(
        defaults, asr=dataclasses.replace(defaults.asr, language_cuts=True)
    )
    off = dataclasses.replace(settings, asr=dataclasses.replace(settings.asr, language_cuts=False))
    whole = stages.segment.fn(Audio(samples, SR), off)
    assert len(whole.clips) == 1  # both sentences in one clip
    cut = stages.segment.fn(Audio(samples, SR), settings)
    assert len(cut.clips) == 2
    for clip, truth in zip(cut.clips, regions, strict=True):
        assert clip.region.start <= truth.start + 0.1 and clip.region.end >= truth.end - 0.1
        assert clip.region.duration < truth.duration + 0.5  # no part of the other sentence
    model = loaders.whisper_model()
    own = language.DetectOptions(pool_speakers=False)  # each part heard on its own
    guesses = language.detect_languages(model, samples, [c.region for c in cut.clips], own)
    # The parts are heard as different languages. The English one is 1.7 s of a German
    # voice, and Whisper base alone is unsure which (en at 0.15 for the region without chunk
    # context, id at 0.34 for the one with it, 6 ms apart): only "not German" is stable.
    assert guesses[0].language == "de" and guesses[1].language != "de"
    pinned = dataclasses.replace(settings, asr=dataclasses.replace(settings.asr, language="de"))
    assert len(stages.segment.fn(Audio(samples, SR), pinned).clips) == 1  # a pinned language


def test_language_runs_shorter_than_a_clip_join_their_neighbour() -> None:
    spans = [Region(0, 2), Region(2.5, 4), Region(4.4, 4.9), Region(5.3, 8)]
    assert language_cuts.parts([False, True, False], spans, 1.0) == [[0, 1], [2, 3]]
    assert language_cuts.parts([False, False, True], spans, 1.0) == [[0, 1, 2], [3]]
    assert language_cuts.parts([True, False, False], spans, 3.0) == [[0, 1, 2, 3]]
    assert language_cuts.parts([False, False, False], spans, 1.0) == [[0, 1, 2, 3]]
    sure_de, sure_en = {"de": 0.95, "en": 0.05}, {"en": 0.9, "de": 0.1}
    assert language_cuts.change_nats(sure_de, sure_en) == pytest.approx(
        np.log(0.95 * 0.9) - np.log(0.95 * 0.1)
    )
    assert language_cuts.change_nats(sure_de, sure_de) == 0.0
