"""TaskGraph.to_networkx: the graph users run their own algorithms on, faithful to the tables."""
import networkx as nx
import numpy as np

import daydream
from conftest import shared


def test_to_networkx_matches_the_tables():
    graph = daydream.build_graph(daydream.load(shared("hta/cuda_event_sync_a100.json.gz")))
    g = graph.to_networkx()
    assert g.number_of_nodes() == graph.n_tasks
    assert g.number_of_edges() == len(graph.edges)
    kernels = [n for n, k in g.nodes(data="kind_name") if k == "kernel"]
    assert len(kernels) == int((graph.tasks["kind"] == 4).sum()) > 0
    node = g.nodes[kernels[0]]
    assert node["dur"] == graph.tasks["dur"].iloc[kernels[0]]
    assert node["name_text"] == graph.names[graph.tasks["name"].iloc[kernels[0]]]
    launches = [(u, v) for u, v, k in g.edges(data="kind") if k == "launch"]
    assert launches and all(g.nodes[v]["kind_name"] in ("kernel", "memcpy", "memset", "collective")
                            for _, v in launches)
    assert (np.asarray([d for _, _, d in g.edges(data="delay")]) >= 0).all()


def test_half_node_graph_is_the_acyclic_one_the_simulator_runs():
    """A synchronous memcpy is a 2-cycle between tasks, never between half-nodes; the longest path
    through the half-node graph (edge delays plus task durations) is the replayed span."""
    graph = daydream.build_graph(daydream.load(shared("hta/cuda_event_sync_a100.json.gz")))
    g = nx.DiGraph()
    for u, v, d in graph.to_networkx(half_nodes=True).edges(data="delay"):
        g.add_edge(u, v, w=max(d, g.edges[u, v]["w"]) if g.has_edge(u, v) else d)
    assert nx.is_directed_acyclic_graph(g)
    assert g.number_of_nodes() == 2 * graph.n_tasks


def test_to_networkx_graph_algorithms_run():
    graph = daydream.build_graph(daydream.load(shared("hta/simple_add_a100.json.gz")))
    g = graph.to_networkx()
    assert nx.is_directed_acyclic_graph(nx.DiGraph(g))
    assert nx.dag_longest_path_length(nx.DiGraph(g)) > 0
