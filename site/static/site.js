// maebench leaderboard: sortable tables, family filter, per-query comparison.
// Plain JavaScript, no libraries, no network: the site must work from file://.
(function () {
  "use strict";

  function sortValue(cell, type) {
    if (!cell) return null;
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") return null;
    if (type === "num") {
      var v = parseFloat(raw);
      return isNaN(v) ? null : v;
    }
    return raw.toLowerCase();
  }

  // Sort a table by column `index`; missing values always go last, ties keep the current order.
  function sortTable(table, index, type, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) {
      return { row: row, i: i, v: sortValue(row.cells[index], type) };
    });
    keyed.sort(function (a, b) {
      if (a.v === null && b.v === null) return a.i - b.i;
      if (a.v === null) return 1;
      if (b.v === null) return -1;
      if (a.v < b.v) return descending ? 1 : -1;
      if (a.v > b.v) return descending ? -1 : 1;
      return a.i - b.i;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
  }

  function makeSortable(table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      if (th.hasAttribute("data-nosort")) return;
      th.setAttribute("tabindex", "0");
      function activate(event) {
        if (event.target.tagName === "A") return;  // header links still navigate
        var type = th.getAttribute("data-type") || "text";
        var current = th.getAttribute("aria-sort");
        // numbers sort high-to-low first (best first), text A-to-Z first
        var descending = current ? current === "ascending" : type === "num";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        sortTable(table, index, type, descending);
      }
      th.addEventListener("click", activate);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") activate(e); });
    });
  }

  function setupFamilyFilter() {
    var boxes = document.querySelectorAll("input[data-family]");
    function apply() {
      var shown = {};
      Array.prototype.forEach.call(boxes, function (b) { shown[b.getAttribute("data-family")] = b.checked; });
      document.querySelectorAll("table.leaderboard tbody tr").forEach(function (row) {
        row.hidden = shown[row.getAttribute("data-family")] === false;
      });
    }
    Array.prototype.forEach.call(boxes, function (b) { b.addEventListener("change", apply); });
  }

  function cell(text, cls, sortKey) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (sortKey !== undefined) td.setAttribute("data-sort", String(sortKey));
    return td;
  }

  // The per-query page: #a=<model>&b=<model>&q=<query id> names the pair and the query shown.
  function readHash() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var i = part.indexOf("=");
      if (i > 0) out[decodeURIComponent(part.slice(0, i))] = decodeURIComponent(part.slice(i + 1));
    });
    return out;
  }

  function hashFor(a, b, q) {
    var h = "#a=" + encodeURIComponent(a) + "&b=" + encodeURIComponent(b);
    return q ? h + "&q=" + encodeURIComponent(q) : h;
  }

  function setupPerQuery() {
    var node = document.getElementById("pq-data");
    if (!node) return;
    var data = JSON.parse(node.textContent);
    var byName = {};
    data.models.forEach(function (m) { byName[m.name] = m; });
    var selA = document.getElementById("pq-a"), selB = document.getElementById("pq-b");
    var table = document.getElementById("pq-table");
    var indexOf = {};
    data.qids.forEach(function (q, i) { indexOf[q] = i; });
    var current = null;

    function renderList(listId, titleId, model, i) {
      var list = document.getElementById(listId);
      document.getElementById(titleId).textContent = model.display + " (" + data.metric + " " +
        model.scores[i].toFixed(4) + ")";
      list.innerHTML = "";
      if (!model.top) {
        var li = document.createElement("li");
        li.textContent = "top 10 not on this page (no stored run, or beyond the " +
          "best models whose lists the page carries)";
        list.appendChild(li);
        return;
      }
      var judged = data.qrels ? data.qrels[i] : {};
      model.top[i].forEach(function (doc) {
        var li = document.createElement("li");
        var grade = judged[doc];
        li.className = grade ? "relevant" : "";
        var mark = document.createElement("span");
        mark.className = grade ? "rel" : "norel";
        mark.textContent = grade ? "✓ " + grade : "·";
        mark.title = grade ? "judged relevant (grade " + grade + ")" : "not judged relevant";
        li.appendChild(mark);
        var id = document.createElement("code");
        id.textContent = " " + doc + " ";
        li.appendChild(id);
        if (data.docs && data.docs[doc]) {
          var text = document.createElement("span");
          text.className = "doc";
          text.textContent = data.docs[doc];
          li.appendChild(text);
        }
        list.appendChild(li);
      });
    }

    function renderDetail(q) {
      var section = document.getElementById("pq-detail");
      if (q === null || !(q in indexOf)) { section.hidden = true; return; }
      var i = indexOf[q];
      section.hidden = false;
      document.getElementById("pq-query-title").textContent = "Query " + q;
      document.getElementById("pq-query-text").textContent = data.queries ? data.queries[i] : "(query text not available)";
      renderList("pq-a-list", "pq-a-title", byName[selA.value], i);
      renderList("pq-b-list", "pq-b-title", byName[selB.value], i);
      Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
        tr.classList.toggle("selected", tr.getAttribute("data-qid") === q);
      });
    }

    function render() {
      var a = byName[selA.value], b = byName[selB.value];
      var rows = data.qids.map(function (q, i) {
        var d = Math.round((a.scores[i] - b.scores[i]) * 10000) / 10000;
        return { q: q, i: i, a: a.scores[i], b: b.scores[i], d: d };
      });
      rows.sort(function (x, y) { return y.d - x.d || (x.q < y.q ? -1 : x.q > y.q ? 1 : 0); });
      var body = document.createElement("tbody");
      var wins = 0, losses = 0;
      rows.forEach(function (r) {
        if (r.d > 0) wins++; else if (r.d < 0) losses++;
        var tr = document.createElement("tr");
        tr.setAttribute("data-qid", r.q);
        var sign = r.d > 0 ? " pos" : r.d < 0 ? " neg" : "";
        var qtd = cell("", "query");
        var link = document.createElement("a");
        link.href = hashFor(selA.value, selB.value, r.q);
        link.textContent = r.q;
        qtd.appendChild(link);
        if (data.queries) {
          var span = document.createElement("span");
          span.className = "qtext";
          span.textContent = " " + data.queries[r.i];
          qtd.appendChild(span);
        }
        tr.appendChild(qtd);
        tr.appendChild(cell(r.a.toFixed(4), "num", r.a));
        tr.appendChild(cell(r.b.toFixed(4), "num", r.b));
        tr.appendChild(cell((r.d > 0 ? "+" : r.d < 0 ? "" : "+") + r.d.toFixed(4), "num" + sign, r.d));
        var barTd = cell("", "barcell opt");
        var bar = document.createElement("span");
        bar.className = "bar " + (r.d > 0 ? "pos" : "neg");
        bar.style.setProperty("--w", (Math.abs(r.d) * 50).toFixed(1) + "%");
        barTd.appendChild(bar);
        tr.appendChild(barTd);
        body.appendChild(tr);
      });
      table.replaceChild(body, table.tBodies[0]);
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
      document.getElementById("pq-summary").textContent = "A wins " + wins + ", ties " +
        (rows.length - wins - losses) + ", loses " + losses + " of " + rows.length + " queries.";
      if (current === null && rows.length) current = rows[0].q;  // the biggest win by default
      document.getElementById("pq-link").href = hashFor(selA.value, selB.value, current);
      renderDetail(current);
    }

    function fromHash() {
      var h = readHash();
      if (h.a && byName[h.a]) selA.value = h.a;
      if (h.b && byName[h.b]) selB.value = h.b;
      if (h.q && h.q in indexOf) current = h.q;
      render();
    }

    function onSelect() {
      history.replaceState(null, "", hashFor(selA.value, selB.value, current));
      render();
    }
    selA.addEventListener("change", onSelect);
    selB.addEventListener("change", onSelect);
    window.addEventListener("hashchange", fromHash);
    fromHash();
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  setupFamilyFilter();
  setupPerQuery();
})();
