// vramplan local page: fills the form from /api/options, posts it as JSON, shows the HTML the server renders.
// Hand-written, no libraries; every value shown comes back escaped from the server or set as textContent.
"use strict";

const CHOICES = ["method", "precision", "optimizer", "grad_ckpt", "attention", "loss", "engine",
                 "offload_optimizer", "offload_param"];
const DEFAULTS = {method: "full", precision: "bf16-mixed", optimizer: "adamw", grad_ckpt: "full",
                  attention: "flash", loss: "standard", engine: "deepspeed", offload_optimizer: "none",
                  offload_param: "none", zero: "2", micro_batch: "1", grad_accum: "1", seq_len: "2048",
                  gpus_per_node: "4", nodes: "1", host_ram_gb: ""};
const NUMBERS = ["gpus_per_node", "nodes", "host_ram_gb", "micro_batch", "grad_accum", "seq_len", "lora_r",
                 "zero", "global_batch"];
let OPTIONS = null;
let uploaded = null;          // {name, text} of an uploaded config.json
let planShown = false;
const seq = {estimate: 0, plan: 0, doctor: 0};

const $ = (id) => document.getElementById(id);

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label === undefined ? value : label;
  select.appendChild(o);
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function busy(on) { $("busy").hidden = !on; }

function formFields() {
  const body = {};
  const base = $("base").value;
  if (base) body.base = base;
  if (uploaded) {
    body.config_json = uploaded.text;
    body.config_name = uploaded.name;
  } else {
    body.model = $("model").value;
  }
  body.gpu = $("gpu").value;
  for (const name of CHOICES) body[name] = $(name).value;
  for (const name of NUMBERS) {
    const v = $(name).value.trim();
    if (v !== "") body[name] = v;
  }
  body.plan_method = $("plan_method").value;
  return body;
}

async function post(path, body) {
  const resp = await fetch(path, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    throw new Error((data && data.error) || ("request failed with HTTP " + resp.status));
  }
  return data;
}

async function run(kind, path, body, render) {
  const mine = ++seq[kind];
  busy(true);
  try {
    const data = await post(path, body);
    if (mine !== seq[kind]) return;        // a newer request of the same kind is on its way
    showError("");
    render(data);
  } catch (err) {
    if (mine === seq[kind]) showError(err.message);
  } finally {
    if (mine === seq[kind]) busy(false);
  }
}

function runEstimate() {
  return run("estimate", "/api/estimate", formFields(), (data) => {
    const out = $("estimate-out");
    out.innerHTML = data.html;
    out.dataset.verdict = data.verdict;
  });
}

function runPlan() {
  planShown = true;
  return run("plan", "/api/plan", formFields(), (data) => {
    const out = $("plan-out");
    out.innerHTML = data.html;
    out.dataset.fits = String(data.fits);
    addDownloads(out, data.plans);
  });
}

function addDownloads(out, plans) {
  const table = out.querySelector("table.plans");
  if (!table) return;
  const head = table.querySelector("thead tr");
  const th = document.createElement("th");
  th.textContent = "files";
  head.appendChild(th);
  const rows = table.querySelectorAll("tbody tr");
  plans.forEach((plan, i) => {
    const td = document.createElement("td");
    for (const file of plan.files) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "dl";
      b.dataset.rank = String(plan.rank);
      b.dataset.file = file;
      b.textContent = file;
      b.addEventListener("click", () => download(plan.rank, file));
      td.appendChild(b);
    }
    if (rows[i]) rows[i].appendChild(td);
  });
}

async function download(rank, file) {
  const body = formFields();
  body.plan_rank = rank;
  busy(true);
  try {
    const data = await post("/api/emit", body);
    const text = data.files[file];
    if (text === undefined) throw new Error(file + " is not part of plan " + rank);
    saveText(file, text);
    showError("");
  } catch (err) {
    showError(err.message);
  } finally {
    busy(false);
  }
}

function runDoctor() {
  const body = formFields();  // an uploaded config.json is the model the script trains
  body.script = $("script").value;
  body.ds_json = $("ds_json").value;
  return run("doctor", "/api/doctor", body, (data) => {
    const out = $("doctor-out");
    out.innerHTML = data.html;
    out.dataset.verdict = data.verdict;
    addFixDownloads(out, data.fix_files || {});
  });
}

function saveText(name, text) {
  const type = name.endsWith(".json") ? "application/json" : "text/plain";
  const url = URL.createObjectURL(new Blob([text], {type: type}));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function addFixDownloads(out, files) {
  const names = Object.keys(files);
  if (!names.length) return;
  const p = document.createElement("p");
  p.className = "fix-files";
  p.textContent = "Corrected files (the recommended option applied): ";
  for (const name of names) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "dl";
    b.dataset.file = name;
    b.textContent = name;
    b.addEventListener("click", () => saveText(name, files[name]));
    p.appendChild(b);
  }
  out.prepend(p);
}

let timer = null;
function changed() {
  clearTimeout(timer);
  timer = setTimeout(() => {
    runEstimate();
    if (planShown) runPlan();
  }, 250);
}

function applyScenario(name) {
  const s = OPTIONS.scenarios[name];
  if (!s) return;
  const set = (id, v) => { if (v !== null && v !== undefined) $(id).value = String(v); else if (id in DEFAULTS) $(id).value = DEFAULTS[id]; };
  set("model", s.model);
  set("gpu", s.gpu);
  for (const id of ["gpus_per_node", "nodes", "host_ram_gb", "micro_batch", "grad_accum", "seq_len", "zero", ...CHOICES]) {
    set(id, s[id]);
  }
}

function readUpload(ev) {
  const file = ev.target.files[0];
  const status = $("config-status");
  if (!file) return;
  if (file.size > OPTIONS.limits.max_config_chars) {
    showError("config.json is larger than " + OPTIONS.limits.max_config_chars + " bytes; that is not a model config");
    ev.target.value = "";
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    uploaded = {name: file.name.replace(/\.json$/i, ""), text: String(reader.result)};
    status.textContent = "using the uploaded " + file.name + " (pick a preset to stop)";
    status.hidden = false;
    changed();
  };
  reader.readAsText(file);
}

async function init() {
  try {
    const resp = await fetch("/api/options");
    OPTIONS = await resp.json();
  } catch (err) {
    showError("cannot reach the vramplan server: " + err.message);
    return;
  }
  for (const p of OPTIONS.presets) option($("model"), p.id, p.id + " — " + p.name);
  for (const g of OPTIONS.gpus) option($("gpu"), g.id, g.name + " (" + g.memory + ")");
  for (const [name, s] of Object.entries(OPTIONS.scenarios)) option($("base"), name, name + " — " + s.description);
  for (const name of CHOICES) for (const v of OPTIONS.choices[name]) option($(name), v);
  for (const [id, v] of Object.entries(DEFAULTS)) $(id).value = v;
  $("model").value = "mgm-2b";
  $("gpu").value = "rtx4090";
  $("base").addEventListener("change", () => { applyScenario($("base").value); changed(); });
  $("model").addEventListener("change", () => {
    uploaded = null;
    $("config-file").value = "";
    $("config-status").hidden = true;
  });
  $("config-file").addEventListener("change", readUpload);
  $("setup").addEventListener("change", (ev) => { if (ev.target.id !== "config-file" && ev.target.id !== "base") changed(); });
  $("setup").addEventListener("submit", (ev) => ev.preventDefault());
  $("btn-estimate").addEventListener("click", runEstimate);
  $("btn-plan").addEventListener("click", runPlan);
  $("btn-doctor").addEventListener("click", runDoctor);
  document.body.dataset.ready = "1";
  runEstimate();
}

document.addEventListener("DOMContentLoaded", init);
