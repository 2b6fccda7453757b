"""card + task -> retriever -> canonical run -> evaluation -> stored result (runner).
"""
