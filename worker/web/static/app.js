// claimwire: the little script the pages use (served by claimwire; CSP script-src 'self').
// 1. Forms with data-confirm ask before they are sent; filter forms drop empty fields.
// 2. Table cells get their column's name (data-label), which a narrow screen shows in
//    front of each cell once the table is laid out as one card per row (style.css).
// 3. Elements with an id and data-live="N" are refreshed every N seconds from the same
//    URL: the page is fetched again and the element replaced by its new version (our
//    own server-rendered, escaped HTML; DOMParser runs no script).
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement)) {
    return;
  }
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  // a filter form leaves its empty fields out of the URL: short, shareable links
  if (form.method.toLowerCase() === "get") {
    form.querySelectorAll("input[name], select[name]").forEach(function (field) {
      if (!field.value) {
        field.disabled = true;
        window.setTimeout(function () { field.disabled = false; }, 0);
      }
    });
  }
});

function labelCells(root) {
  root.querySelectorAll("table.list, table.repeats").forEach(function (table) {
    var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.prototype.forEach.call(row.children, function (cell, i) {
        if (names[i] && !cell.dataset.label) {
          cell.dataset.label = names[i];
        }
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", function () { labelCells(document); });

function refreshLive() {
  var live = document.querySelectorAll("[data-live][id]");
  if (!live.length || document.hidden) {
    return;
  }
  fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
    .then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    })
    .then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      live.forEach(function (element) {
        var fresh = doc.getElementById(element.id);
        if (fresh) {
          element.replaceWith(document.importNode(fresh, true));
        }
      });
      labelCells(document);
      document.documentElement.dataset.refreshed = String(Date.now());
    })
    .catch(function () { /* the server may be restarting: try again next time */ });
}

document.addEventListener("DOMContentLoaded", function () {
  var first = document.querySelector("[data-live]");
  if (!first) {
    return;
  }
  var seconds = Math.max(2, parseInt(first.dataset.live, 10) || 5);
  window.setInterval(refreshLive, seconds * 1000);
});
