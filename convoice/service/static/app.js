// The voice bank page: the same API as everyone else (/v1/...), no build step.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { voices: [], chosen: null, recorded: null };
const LANGUAGES = ["en", "ru", "de", "fr", "es", "pt", "zh", "it", "fa", "nl", "tr"];

async function api(path, options) {
  const response = await fetch(path, options);
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const body = isJson ? await response.json() : null;
  if (!response.ok) {
    const error = new Error((body && body.detail) || response.statusText);
    error.body = body;
    throw error;
  }
  return body;
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function attributionCell(voice) {
  if (voice.kind === "shipped") return el("span", { text: `${voice.synthesiser}, licence ${voice.licence}` });
  const list = el("ul");
  for (const a of voice.attributions) {
    const line = a.text || `${a.title} by ${a.uploader} (${a.license})`;
    list.append(el("li", {}, [el("a", { href: a.url, text: line, target: "_blank", rel: "noopener" })]));
  }
  return list;
}

function renderVoices() {
  const body = document.querySelector("#voices tbody");
  body.replaceChildren();
  for (const voice of state.voices) {
    const pick = el("button", { type: "button", class: "pick", "data-voice": voice.id, text: "choose" });
    pick.addEventListener("click", () => choose(voice));
    const clips = el("div");
    for (const url of voice.clips) clips.append(el("audio", { controls: "", preload: "none", src: url }));
    const row = el("tr", { "data-voice": voice.id, class: state.chosen && state.chosen.id === voice.id ? "chosen" : "" }, [
      el("td", {}, [pick]), el("td", { text: voice.name === voice.id ? voice.id : `${voice.id} (${voice.name})` }),
      el("td", { text: voice.kind, class: `kind-${voice.kind}` }), el("td", { text: voice.languages.join(", ") }),
      el("td", { text: voice.hours.toFixed(3) }), el("td", { text: voice.kind === "dataset" ? String(voice.n_clips) : "" }),
      el("td", {}, [clips]), el("td", {}, [el("img", { src: voice.mel, loading: "lazy", alt: `mel spectrogram of ${voice.id}` })]),
      el("td", {}, [attributionCell(voice)]),
    ]);
    body.append(row);
  }
}

async function loadVoices() {
  const params = new URLSearchParams({ language: $("language-filter").value, q: $("search").value, kind: $("kind-filter").value });
  const data = await api(`/v1/voices?${params}`);
  state.voices = data.voices;
  $("release-line").textContent = data.release
    ? `Release ${data.release}: ${data.voices.filter((v) => v.kind === "dataset").length} dataset speakers shown, ${data.voices.filter((v) => v.kind === "shipped").length} shipped voices.`
    : "No release in the store: shipped voices only.";
  $("keep-meaning").textContent = data.keep_meaning;
  renderVoices();
}

function choose(voice) {
  state.chosen = voice;
  $("chosen-voice").textContent = `${voice.id} (${voice.kind})`;
  document.querySelector("input[name=source][value=bank]").checked = true;
  if (voice.kind === "shipped") $("language").value = voice.languages[0];
  renderVoices();
}

function uploadedFile() {
  const file = $("upload").files[0];
  if (file) return file;
  if (state.recorded) return new File([state.recorded], "recording.webm", { type: "audio/webm" });
  return null;
}

async function findVoice(event) {
  event.preventDefault();
  $("match-error").textContent = ""; $("match-result").replaceChildren();
  const file = uploadedFile();
  if (!file) { $("match-error").textContent = "Choose a file or record first."; return; }
  const form = new FormData();
  form.append("file", file); form.append("keep", $("keep").checked ? "true" : "false");
  $("match-button").disabled = true;
  try {
    const data = await api("/v1/voices/match", { method: "POST", body: form });
    const list = el("ol", { id: "nearest" });
    for (const v of data.nearest) {
      const use = el("button", { type: "button", text: "choose" });
      use.addEventListener("click", () => choose(v));
      list.append(el("li", { "data-voice": v.id }, [`${v.id} (${v.kind}), similarity ${v.similarity.toFixed(3)} `, use]));
    }
    $("match-result").append(el("p", { text: `${data.seconds} s, ${data.speech_seconds} s of speech; ${data.kept ? "kept as you asked" : "deleted"}. Nearest bank voices:` }),
      list, el("img", { src: data.mel, alt: "mel spectrogram of your recording", class: "upload-mel" }));
    document.querySelector("input[name=source][value=upload]").checked = true;
  } catch (error) {
    $("match-error").textContent = error.message;
  } finally { $("match-button").disabled = false; }
}

async function speak(event) {
  event.preventDefault();
  $("speak-error").textContent = ""; $("speak-result").hidden = true;
  const form = new FormData();
  form.append("text", $("text").value); form.append("language", $("language").value);
  form.append("mode", $("mode").value); form.append("format", "json");
  const source = document.querySelector("input[name=source]:checked").value;
  if (source === "upload") {
    const file = uploadedFile();
    if (!file) { $("speak-error").textContent = "Upload or record a voice first."; return; }
    form.append("file", file); form.append("keep", $("keep").checked ? "true" : "false");
  } else if (state.chosen) {
    form.append("voice", state.chosen.id);
  } else { $("speak-error").textContent = "Choose a voice in the table first."; return; }
  $("speak-button").disabled = true; $("progress").textContent = "Speaking and measuring…";
  try {
    const r = await api("/v1/speech", { method: "POST", body: form });
    $("result-label").textContent = `${r.label} [synthesiser: ${r.synthesiser}, kind: ${r.kind}]`;
    $("player").src = r.audio.wav;
    $("download-wav").href = `${r.audio.wav}?download=true`;
    $("download-mp3").href = `${r.audio.mp3}?download=true`;
    $("similarity").textContent = r.similarity === null ? "not measured" : r.similarity.toFixed(3);
    $("wer").textContent = r.wer === null ? "not measured" : r.wer.toFixed(3);
    $("heard").textContent = r.heard; $("synth-time").textContent = `${r.synth_seconds} s for ${r.seconds} s of audio`;
    $("mel-reference").src = r.mel.reference; $("mel-result").src = r.mel.result;
    $("speak-result").hidden = false;
    $("player").play().catch(() => {});
  } catch (error) {
    let message = error.message;
    if (error.body && error.body.nearest) {
      message += "\nNearest bank voices: " + error.body.nearest.map((v) => `${v.id} (${v.similarity.toFixed(3)})`).join(", ");
    }
    $("speak-error").textContent = message;
  } finally { $("speak-button").disabled = false; $("progress").textContent = ""; }
}

async function batch(event) {
  event.preventDefault();
  $("batch-error").textContent = ""; $("batch-zip").hidden = true;
  const texts = $("batch-texts").value.split("\n").map((t) => t.trim()).filter((t) => t);
  if (!state.chosen) { $("batch-error").textContent = "Choose a bank voice in the table first."; return; }
  if (!texts.length) { $("batch-error").textContent = "Type at least one text, one per line."; return; }
  const items = texts.map((text) => ({ text, voice: state.chosen.id, language: $("language").value, mode: $("mode").value }));
  $("batch-button").disabled = true;
  try {
    let job = await api("/v1/speech/batch", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ items, format: $("batch-format").value }),
    });
    const bar = $("batch-progress");
    bar.hidden = false;
    for (;;) {
      bar.value = job.progress;
      $("batch-line").textContent = `${job.status}: ${job.done} of ${job.total} done` + (job.failed ? `, ${job.failed} failed` : "");
      if (job.status === "done") break;
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await api(`/v1/jobs/${job.id}`);
    }
    if (job.result) { $("batch-zip").href = job.result; $("batch-zip").hidden = false; }
  } catch (error) {
    $("batch-error").textContent = error.message;
  } finally { $("batch-button").disabled = false; }
}

async function record() {
  const button = $("record");
  if (state.recorder) { state.recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    state.recorder = new MediaRecorder(stream);
    state.recorder.ondataavailable = (e) => chunks.push(e.data);
    state.recorder.onstop = () => {
      state.recorded = new Blob(chunks, { type: "audio/webm" });
      stream.getTracks().forEach((t) => t.stop());
      state.recorder = null; button.textContent = "Record again";
    };
    state.recorder.start(); button.textContent = "Stop recording";
  } catch (error) { $("match-error").textContent = `Cannot record: ${error.message}`; }
}

for (const code of LANGUAGES) {
  $("language-filter").append(el("option", { value: code, text: code }));
  $("language").append(el("option", { value: code, text: code }));
}
$("language-filter").addEventListener("change", loadVoices);
$("kind-filter").addEventListener("change", loadVoices);
$("search").addEventListener("input", loadVoices);
$("match-form").addEventListener("submit", findVoice);
$("speak-form").addEventListener("submit", speak);
$("record").addEventListener("click", record);
$("batch-form").addEventListener("submit", batch);
loadVoices().catch((error) => { $("release-line").textContent = `Cannot load the bank: ${error.message}`; });
