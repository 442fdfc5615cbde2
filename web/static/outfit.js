// "Complete the look" on the search page: when a search starts (search.js sends a "lookalike:query" event),
// ask the API for the look around the photo (POST /api/outfit) or the item (GET /api/items/<id>/outfit).
(() => {
  "use strict";
  const panel = document.getElementById("outfit");
  const list = document.getElementById("outfit-look");
  const statusEl = document.getElementById("outfit-status");
  if (!panel || !list) return;
  let seq = 0;

  function piece(hit, label) {
    const li = document.createElement("li");
    li.className = "outfit-piece";
    li.dataset.slot = hit.slot;
    li.dataset.itemId = String(hit.id);
    const tag = document.createElement("span");
    tag.className = "outfit-slot";
    tag.textContent = label;
    const thumb = document.createElement("a");
    thumb.className = "outfit-thumb";
    thumb.href = hit.item_url;
    const img = document.createElement("img");
    img.src = hit.thumb_url;
    img.alt = hit.title || hit.external_id;
    img.loading = "lazy";
    thumb.append(img);
    const name = document.createElement("a");
    name.className = "outfit-name";
    name.href = hit.item_url;
    name.title = hit.title || "";
    name.textContent = hit.title || hit.external_id;
    const meta = document.createElement("p");
    meta.className = "card-meta";
    if (hit.base_colour) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.dataset.colour = hit.base_colour;
      meta.append(swatch, `${hit.base_colour} · `);
    }
    meta.append(hit.article_type || "");
    li.append(tag, thumb, name, meta);
    return li;
  }

  function render(data) {
    list.replaceChildren();
    for (const slot of data.slots) {
      if (slot.items.length) list.append(piece(slot.items[0], slot.label));
    }
    if (window.lookalikePaintSwatches) window.lookalikePaintSwatches(list);
    const where = data.query.slot ? ` for this ${data.query.slot.replace("_", "-")}` : "";
    statusEl.textContent = data.note || (list.children.length ? `A complete outfit${where}.` : "No outfit suggestions.");
    panel.hidden = false;
  }

  document.addEventListener("lookalike:query", async (event) => {
    const { file, itemId, crop, filters } = event.detail || {};
    const mine = ++seq;
    const gender = filters && filters.gender ? { gender: filters.gender } : null;
    let response;
    try {
      if (file) {
        const body = new FormData();
        body.append("image", file, file.name || "photo");
        if (crop) body.append("crop", crop.map((v) => v.toFixed(4)).join(","));
        if (gender) body.append("filters", JSON.stringify(gender));
        response = await fetch("/api/outfit", { method: "POST", body });
      } else if (itemId !== null && itemId !== undefined) {
        const params = new URLSearchParams();
        if (gender) params.set("filters", JSON.stringify(gender));
        response = await fetch(`/api/items/${itemId}/outfit?${params}`);
      } else {
        return;
      }
      const data = await response.json().catch(() => null);
      if (mine !== seq) return;
      if (!response.ok || !data) {
        panel.hidden = true;
        return;
      }
      render(data);
    } catch (err) {
      if (mine === seq) panel.hidden = true;
    }
  });
})();
