"""A token trie over the labels, so that shared label prefixes are scored once."""


class LabelTrie:
    """The labels' token sequences merged into a prefix tree.

    Nodes are numbered in insertion order.  Node ``n`` stands for the token
    ``tokens[n]`` following the path of its ``parents``; a parent of ``-1``
    means the node follows the prompt directly.

    Parameters
    ----------
    label_ids : list of list of int
        One non-empty token sequence per label.

    Attributes
    ----------
    tokens, parents, depths : list of int
        Per node: its token, its parent node (or -1) and its depth (1-based).
    paths : list of list of int
        Per label: the node ids from its first to its last token.
    internal : list of int
        Nodes with children, i.e. the nodes whose next-token distribution is
        needed.
    leaves : list of int
        Nodes without children: the ends of the labels no other label extends.
    leaf_of_label : list of int
        Per label: the position in ``leaves`` of a leaf whose path starts with
        the label's path, so scoring the leaves' paths scores every label.
    """

    def __init__(self, label_ids):
        self.tokens, self.parents, self.depths, self.paths = [], [], [], []
        children = {}
        for ids in label_ids:
            if not ids:
                raise ValueError("every label must have at least one token")
            node, path = -1, []
            for token in ids:
                key = (node, int(token))
                if key not in children:
                    children[key] = len(self.tokens)
                    self.tokens.append(int(token))
                    self.parents.append(node)
                    self.depths.append(1 if node < 0 else self.depths[node] + 1)
                node = children[key]
                path.append(node)
            self.paths.append(path)
        has_child = {parent for parent in self.parents if parent >= 0}
        self.internal = sorted(has_child)
        self.leaves = [n for n in range(len(self.tokens)) if n not in has_child]
        first_child = {}
        for node, parent in enumerate(self.parents):
            first_child.setdefault(parent, node)
        slot = {leaf: i for i, leaf in enumerate(self.leaves)}
        self.leaf_of_label = []
        for path in self.paths:
            node = path[-1]
            while node in has_child:
                node = first_child[node]
            self.leaf_of_label.append(slot[node])

    def __len__(self):
        return len(self.tokens)

    @property
    def max_depth(self):
        return max(self.depths)

    def path_tokens(self, node):
        """The token ids from the root to ``node``, inclusive."""
        return [self.tokens[n] for n in self.ancestors_or_self(node)]

    def ancestors_or_self(self, node):
        """Node ids on the path from the root to ``node``, inclusive."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]
