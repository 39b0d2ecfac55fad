// The console's only script (no inline script anywhere: the Content-Security-Policy forbids it).
// - drop zones: photos dropped on a file field's label are put in the field;
// - uploads: a form with photos is sent in the background with its progress shown, then its answer replaces the page;
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
      const box = document.getElementById("progress");
      if (!box || !window.FormData) return;  // the plain form post still works
      e.preventDefault();
      const bar = document.getElementById("progress-bar");
      const text = document.getElementById("progress-text");
      const data = new FormData(form);
      const photos = [...form.querySelectorAll("input[type=file]")].reduce((n, i) => n + i.files.length, 0);
      const xhr = new XMLHttpRequest();
      box.hidden = false;
      text.textContent = `Uploading ${photos} photo${photos === 1 ? "" : "s"}…`;
      xhr.upload.addEventListener("progress", (p) => {
        if (p.lengthComputable) bar.value = Math.round((100 * p.loaded) / p.total);
      });
      xhr.upload.addEventListener("load", () => {
        bar.removeAttribute("value");  // indeterminate while the server detects and embeds
        text.textContent = `Uploaded; detecting and embedding ${photos} photo${photos === 1 ? "" : "s"}…`;
      });
      xhr.addEventListener("load", () => {
        document.open();
        document.write(xhr.responseText);
        document.close();
      });
      xhr.addEventListener("error", () => { text.textContent = "The upload failed; try again."; });
      xhr.open("POST", form.action);
      xhr.send(data);
    });
  }
});
