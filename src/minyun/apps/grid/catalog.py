"""The demo's report categories (Open311 services), departments and routing rules for Gulou."""

from __future__ import annotations

from typing import Any

# code, name, group, description, arrive (minutes), close (hours), attributes, departments
SERVICES: list[dict[str, Any]] = [
    {
        "code": "fire-lane",
        "name": "占用消防通道",
        "group": "公共安全",
        "keywords": "消防通道,违停,堵塞",
        "description": "车辆或杂物占用、堵塞消防车通道。",
        "arrive_minutes": 10,
        "close_hours": 2,
        "notice": "交警、消防、房管将于10分钟内到场处置。",
        "attributes": [
            {"code": "BLOCKING", "datatype": "singlevaluelist", "required": True, "order": 1,
             "description": "通道堵塞程度", "datatype_description": "",
             "values": [{"key": "full", "name": "完全堵塞"}, {"key": "partial", "name": "部分堵塞"}]},
            {"code": "PLATE", "datatype": "string", "required": False, "order": 2,
             "description": "车牌号（如有）", "datatype_description": "例如 闽A12345",
             "values": []},
        ],
        "departments": ["gl-traffic", "gl-fire", "gl-housing"],
    },
    {
        "code": "illegal-parking",
        "name": "违法停车",
        "group": "交通",
        "keywords": "停车,占道",
        "description": "机动车在禁停路段、人行道违法停放。",
        "arrive_minutes": 20,
        "close_hours": 4,
        "notice": "交警将核实并处理。",
        "attributes": [],
        "departments": ["gl-traffic"],
    },
    {
        "code": "road-damage",
        "name": "道路破损",
        "group": "市政设施",
        "keywords": "坑洼,井盖,路面",
        "description": "路面坑洼、井盖缺失或破损。",
        "arrive_minutes": 60,
        "close_hours": 48,
        "notice": "城管部门将安排维修。",
        "attributes": [
            {"code": "COVER", "datatype": "singlevaluelist", "required": False, "order": 1,
             "description": "是否涉及井盖", "datatype_description": "",
             "values": [{"key": "yes", "name": "是"}, {"key": "no", "name": "否"}]},
        ],
        "departments": ["gl-urban"],
    },
    {
        "code": "garbage",
        "name": "垃圾堆放",
        "group": "环境卫生",
        "keywords": "垃圾,卫生,清运",
        "description": "生活垃圾、建筑垃圾乱堆乱放或未及时清运。",
        "arrive_minutes": 60,
        "close_hours": 24,
        "notice": "环卫将清运。",
        "attributes": [],
        "departments": ["gl-urban"],
    },
    {
        "code": "streetlight",
        "name": "路灯故障",
        "group": "市政设施",
        "keywords": "路灯,照明",
        "description": "路灯不亮、频闪或灯杆损坏。",
        "arrive_minutes": 120,
        "close_hours": 72,
        "notice": "城管部门将安排维修。",
        "attributes": [],
        "departments": ["gl-urban"],
    },
    {
        "code": "building-hazard",
        "name": "房屋安全隐患",
        "group": "住房安全",
        "keywords": "危房,外墙,脱落",
        "description": "外墙脱落、房屋开裂等安全隐患。",
        "arrive_minutes": 30,
        "close_hours": 24,
        "notice": "房管部门将到场查看。",
        "attributes": [],
        "departments": ["gl-housing"],
    },
]  # fmt: skip

# code, name: the district departments reports go to, and the grid centre escalations reach.
DEPARTMENTS: list[tuple[str, str]] = [
    ("gl-traffic", "福州市公安局交通警察支队鼓楼大队"),
    ("gl-fire", "福州市鼓楼区消防救援大队"),
    ("gl-housing", "福州市鼓楼区住房和城乡建设局（房管）"),
    ("gl-urban", "福州市鼓楼区城市管理局"),
    ("gl-grid-centre", "福州市鼓楼区网格化服务管理中心"),
]
GRID_CENTRE = "gl-grid-centre"
