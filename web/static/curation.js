// "Why?" on every result card of the search page: asks /api/explain why the result matched its query (a photo
// search by the search id its card carries: the part of the photo that found it, nothing uploaded again; or the
// item of "more like this") and shows both pictures with their heatmaps, the type and colour the model reads from
// each, and whether they agree. Listens to search.js's lookalike:query event.
(() => {
  "use strict";
  const results = document.getElementById("results");
  if (!results) return;
  const query = { file: null, itemId: null };
  document.addEventListener("lookalike:query", (event) => {
    query.file = event.detail.file || null;
    query.itemId = event.detail.itemId === null || event.detail.itemId === undefined ? null : event.detail.itemId;
  });

  let dialog = null;
  function makeDialog() {
    dialog = document.createElement("dialog");
    dialog.className = "why-dialog";
    dialog.id = "why-dialog";
    dialog.innerHTML = `<h2>Why this result?</h2><p class="why-status hint" role="status"></p>
      <div class="why-sides"><figure class="why-side"><figcaption>Your query</figcaption><canvas width="256" height="256"
      class="why-query"></canvas><p class="why-attrs why-query-attrs"></p></figure><figure class="why-side">
      <figcaption>This result</figcaption><canvas width="256" height="256" class="why-item"></canvas>
      <p class="why-attrs why-item-attrs"></p></figure></div><p class="why-summary"></p>
      <form method="dialog"><button class="button" id="why-close">Close</button></form>`;
    document.body.appendChild(dialog);
  }

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = reject;
      img.src = src;
    });
  }

  // Draw the picture (or its part ``box``: relative x0, y0, x1, y1) letterboxed on white as the model sees it, then
  // the heat grid over it.
  function draw(canvas, img, heat, box) {
    const ctx = canvas.getContext("2d");
    const size = canvas.width;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    const [x0, y0, x1, y1] = box || [0, 0, 1, 1];
    const sx = x0 * img.naturalWidth;
    const sy = y0 * img.naturalHeight;
    const sw = Math.max(1, (x1 - x0) * img.naturalWidth);
    const sh = Math.max(1, (y1 - y0) * img.naturalHeight);
    const scale = Math.min(size / sw, size / sh);
    const w = sw * scale;
    const h = sh * scale;
    ctx.drawImage(img, sx, sy, sw, sh, (size - w) / 2, (size - h) / 2, w, h);
    const n = heat.length;
    const cell = size / n;
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        ctx.fillStyle = `rgba(255, 40, 0, ${(0.6 * heat[r][c]).toFixed(3)})`;
        ctx.fillRect(c * cell, r * cell, cell, cell);
      }
    }
  }

  function attrs(side) {
    const type = side.type ? `${side.type} (${Math.round(100 * side.type_confidence)}%)` : "type unknown";
    return `${type} · ${side.colour}`;
  }

  async function explain(itemId, card) {
    if (!dialog) makeDialog();
    const status = dialog.querySelector(".why-status");
    status.textContent = "Working out why…";
    dialog.querySelector(".why-summary").textContent = "";
    if (!dialog.open) dialog.showModal();
    let response;
    const searchId = card && card.dataset.searchId;
    try {
      if (searchId && query.file) {
        const params = new URLSearchParams({ query: searchId, item: String(itemId) });
        if (card.dataset.region !== undefined) params.set("region", card.dataset.region);
        response = await fetch(`/api/explain?${params}`);
      } else if (query.itemId !== null) {
        response = await fetch(`/api/explain?query=${encodeURIComponent(query.itemId)}&item=${itemId}`);
      } else {
        status.textContent = "“Why?” explains a photo search or “more like this”: words alone have no picture to " +
          "compare.";
        return;
      }
      const data = await response.json();
      if (!response.ok) {
        status.textContent = data && data.error ? data.error.message : `The server answered ${response.status}.`;
        return;
      }
      const querySrc = searchId ? URL.createObjectURL(query.file) : `/items/${query.itemId}/image`;
      const [qImg, iImg] = await Promise.all([loadImage(querySrc), loadImage(`/items/${itemId}/image`)]);
      if (searchId) URL.revokeObjectURL(querySrc);
      draw(dialog.querySelector("canvas.why-query"), qImg, data.query.heatmap, data.query_ref.box);
      draw(dialog.querySelector("canvas.why-item"), iImg, data.item.heatmap);
      dialog.querySelector(".why-query-attrs").textContent = attrs(data.query);
      dialog.querySelector(".why-item-attrs").textContent = attrs(data.item);
      const agree = [];
      if (data.agree.type !== null) agree.push(data.agree.type ? "same type" : "different types");
      agree.push(data.agree.colour ? "same colour" : "different colours");
      const summary = dialog.querySelector(".why-summary");
      summary.textContent = `Similarity ${data.score.toFixed(2)}: ${agree.join(", ")}. Red marks the parts of each ` +
        `picture that make them alike (${data.method}, ${Math.round(data.timing_ms)} ms).`;
      summary.dataset.ready = "true";
      status.textContent = "";
      if (card) card.dataset.explained = "true";
    } catch (err) {
      status.textContent = "Could not reach the server. Try again.";
    }
  }

  function addButtons(root) {
    for (const card of root.querySelectorAll(".card:not([data-why])")) {
      card.dataset.why = "true";
      const foot = card.querySelector(".card-foot");
      if (!foot) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button why-button";
      button.textContent = "Why?";
      button.title = "Why did this match?";
      button.addEventListener("click", () => explain(card.dataset.itemId, card));
      foot.appendChild(button);
    }
  }
  new MutationObserver(() => addButtons(results)).observe(results, { childList: true });
  addButtons(results);
  // A page opened with ?item=N (more like this) starts from that item.
  const start = new URLSearchParams(location.search).get("item");
  if (start && /^\d+$/.test(start) && query.itemId === null) query.itemId = start;
})();
