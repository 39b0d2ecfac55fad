// The console's only script (no inline script anywhere: the Content-Security-Policy forbids it).
// - drop zones: photos dropped on a file field's label are put in the field;
// - enroll: the photos are sent in chunks, each chunk's outcomes added to the page as it is answered, with progress
//   (without script, the form posts whole and the server's page shows the outcomes);
// - buttons with data-confirm ask first.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const zone of document.querySelectorAll("label.drop")) {
    const input = zone.querySelector("input[type=file]");
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (input && e.dataTransfer && e.dataTransfer.files.length) input.files = e.dataTransfer.files;
    });
  }
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (e) => { if (!window.confirm(button.dataset.confirm)) e.preventDefault(); });
  }
  for (const form of document.querySelectorAll("form.upload")) {
    form.addEventListener("submit", (e) => {
      if (!document.getElementById("results") || !window.fetch || !window.FormData) return;  // the plain post works
      const files = [];
      for (const input of form.querySelectorAll("input[type=file]")) {
        for (const f of input.files) files.push([input.name, f]);
      }
      if (!files.length) return;  // the server says what is missing
      e.preventDefault();
      enrollInChunks(form, files);
    });
  }
});

// Photos go in chunks (at most 8 photos or 8 MB each: a folder of phone photos stays under the server's body limit),
// one request each; every chunk's outcome rows are added as it is answered, with the count so far.
async function enrollInChunks(form, files) {
  const box = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const results = document.getElementById("results");
  const rows = results.querySelector("tbody");
  const chunks = [];
  let chunk = [], bytes = 0;
  for (const item of files) {
    if (chunk.length && (chunk.length === 8 || bytes + item[1].size > 8e6)) { chunks.push(chunk); chunk = []; bytes = 0; }
    chunk.push(item);
    bytes += item[1].size;
  }
  chunks.push(chunk);
  const fields = [...new FormData(form)].filter(([, v]) => typeof v === "string");
  for (const b of form.querySelectorAll("button")) b.disabled = true;
  results.removeAttribute("data-done");
  rows.replaceChildren();
  results.hidden = false;
  box.hidden = false;
  let done = 0;
  const total = files.length;
  const say = () => { bar.value = Math.round((100 * done) / total); text.textContent = `${done} of ${total} photos done`; };
  say();
  for (const part of chunks) {
    const data = new FormData();
    for (const [k, v] of fields) data.append(k, v);
    for (const [field, f] of part) data.append(field, f, f.webkitRelativePath || f.name);
    let answer;
    try {
      const res = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin" });
      answer = new DOMParser().parseFromString(await res.text(), "text/html");
    } catch (err) {
      answer = null;
    }
    const got = answer ? answer.querySelectorAll("#results tbody tr") : [];
    if (got.length) {
      for (const tr of got) rows.append(document.importNode(tr, true));
    } else {  // the whole chunk was refused: say why on each of its photos
      const why = answer && answer.querySelector(".error");
      for (const [, f] of part) {
        const tr = document.createElement("tr");
        tr.className = "rejected";
        for (const cell of [f.webkitRelativePath || f.name, "", why ? why.querySelector("code").textContent : "error",
                            why ? why.textContent : "the upload failed; try again"]) {
          const td = document.createElement("td");
          td.textContent = cell;
          tr.append(td);
        }
        rows.append(tr);
      }
    }
    done += part.length;
    say();
  }
  const stored = rows.querySelectorAll("tr.accepted").length;
  text.textContent = `${total} photos done: ${stored} stored, ${total - stored} not`;
  for (const b of form.querySelectorAll("button")) b.disabled = false;
  results.dataset.done = "true";
}
