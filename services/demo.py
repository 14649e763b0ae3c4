"""A realistic demo car shop: ``ccbot demo-data --clients N --seed S``.

Everything comes from one ``random.Random(seed)`` (:class:`DemoRandom`) and from ``now``, so
the same seed, count and ``now`` give the same rows, id for id. The shop is Russian: people
named with realistic frequency (a long tail of rare surnames), companies (ООО, АО, ИП) with
valid INNs, phones in E.164 digits, e-mails, discount cards; about 1.3 cars per client, some
cars shared by an owner and a driver, plates of the 12 allowed letters, VINs, frame numbers
for Japanese-market cars; events, customer orders with reservations, work orders in every
state, repair plans and requests, invoices and sales made on the basis of orders, payments,
bookings for today and other days, and selection history. Client #1 is the client of the
seed's screenshots: Иванов Иван, +7 (945) 123-10-10, ivanov@mail.ru, his TOYOTA COROLLA
with the plate Н123АР77 and the VIN NMTBM28E80R058037.

Rows are written by :class:`storage.bulk.BulkLoader` in chunks of ``CHUNK_CLIENTS`` clients,
one transaction per chunk, with their ``search_terms`` made by the one normalisation
(``services.normalize.client_terms`` / ``car_terms``). A million clients take minutes.
The data goes into a database without clients (it refuses otherwise): reference rows that
are already there (staff by Telegram id, price types by code, warehouses by name) are
reused, and document numbers continue from ``doc_counters``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.normalize import car_terms, client_terms, normalize_code, normalize_name
from services.numbering import format_number
from storage.bulk import BulkLoader, RowBuffer
from storage.models import (
    Base,
    BookingState,
    CarRole,
    Client,
    ClientKind,
    ClientRelation,
    ContactKind,
    Direction,
    DocCounter,
    DocState,
    DocType,
    EventKind,
    LineKind,
    PaymentMethod,
    PriceType,
    Role,
    Staff,
    Warehouse,
)
from storage.search_index import term_rows

CHUNK_CLIENTS = 5_000
PREFIX = "ЦОА"  # one prefix for every document type, as on the seed's screenshots
STAFF_TELEGRAM_BASE = 700_000_000  # fake Telegram ids of the demo staff
CHAT_ID_BASE = 5_000_000_000  # fake Telegram chat ids of linked clients

SEED_PHONE = "79451231010"
SEED_PLATE = "Н123АР77"
SEED_VIN = "NMTBM28E80R058037"
SEED_CAR = ("TOYOTA", "COROLLA", "седан (_E12J_,_E12T_)")

HOUR = 3600
DAY = 86400


class DemoError(RuntimeError):
    """The demo shop cannot be made here (the message says why)."""


@dataclass(slots=True)
class DemoSummary:
    clients: int = 0
    companies: int = 0
    contacts: int = 0
    cards: int = 0
    cars: int = 0
    client_cars: int = 0
    events: int = 0
    unprocessed_events: int = 0
    documents: int = 0
    document_lines: int = 0
    payments: int = 0
    reservations: int = 0
    bookings: int = 0
    bookings_today: int = 0
    selections: int = 0
    search_terms: int = 0
    staff: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        def n(value: int) -> str:
            return f"{value:,}".replace(",", " ")

        return (
            f"demo shop: {n(self.clients)} clients ({n(self.companies)} companies), "
            f"{n(self.cars)} cars ({n(self.client_cars)} links), {n(self.contacts)} contacts, "
            f"{n(self.cards)} cards, {n(self.events)} events ({n(self.unprocessed_events)} new), "
            f"{n(self.documents)} documents ({n(self.document_lines)} lines, "
            f"{n(self.payments)} payments), {n(self.reservations)} reservations, "
            f"{n(self.bookings)} bookings ({n(self.bookings_today)} today), "
            f"{n(self.selections)} selections, {n(self.search_terms)} search terms, "
            f"{self.staff} staff; {self.seconds:.1f} s"
        )


# --- names ----------------------------------------------------------------------------

# The most frequent Russian surnames, most frequent first (male forms).
SURNAMES = """
Смирнов Иванов Кузнецов Соколов Попов Лебедев Козлов Новиков Морозов Петров Волков Соловьев
Васильев Зайцев Павлов Семенов Голубев Виноградов Богданов Воробьев Федоров Михайлов Беляев
Тарасов Белов Комаров Орлов Киселев Макаров Андреев Ковалев Ильин Гусев Титов Кузьмин
Кудрявцев Баранов Куликов Алексеев Степанов Яковлев Сорокин Сергеев Романов Захаров Борисов
Королев Герасимов Пономарев Григорьев Лазарев Медведев Ершов Никитин Соболев Рябов Поляков
Цветков Данилов Жуков Фролов Журавлев Николаев Крылов Максимов Сидоров Осипов Белоусов
Федотов Дорофеев Егоров Матвеев Бобров Дмитриев Калинин Анисимов Петухов Антонов Тимофеев
Никифоров Веселов Филиппов Марков Большаков Суханов Миронов Ширяев Александров Коновалов
Шестаков Казаков Ефимов Денисов Громов Фомин Давыдов Мельников Щербаков Блинов Колесников
Карпов Афанасьев Власов Маслов Исаков Тихонов Аксенов Гаврилов Родионов Котов Горбунов
Кудряшов Быков Зуев Третьяков Савельев Панов Рыбаков Суворов Абрамов Воронов Мухин Архипов
Трофимов Мартынов Емельянов Горшков Чернов Овчинников Селезнев Панфилов Копылов Михеев
Галкин Назаров Лобанов Лукин Беляков Потапов Некрасов Хохлов Жданов Наумов Шилов Воронцов
Ермаков Дроздов Игнатьев Савин Логинов Сафонов Капустин Кириллов Моисеев Елисеев Кошелев
Костин Горбачев Орехов Ефремов Исаев Евдокимов Калашников Кабанов Носков Юдин Кулагин Лапин
Прохоров Нестеров Харитонов Агафонов Муравьев Ларионов Федосеев Зимин Пахомов Шубин Игнатов
Филатов Крюков Рогов Кулаков Терентьев Молчанов Владимиров Артемьев Гурьев Зиновьев Гришин
Кононов Дементьев Ситников Симонов Мишин Фадеев Комиссаров Мамонтов Носов Гуляев Шаров
Устинов Вишняков Евсеев Лаврентьев Брагин Константинов Корнилов Авдеев Зыков Бирюков
Шарапов Никонов Щукин Дьячков Одинцов Сазонов Якушев Красильников Гордеев Самойлов Князев
Беспалов Уваров Шашков Бобылев Доронин Белозеров Рожков Самсонов Мясников Лихачев Буров
Сысоев Фомичев Русаков Стрелков Гущин Тетерин Колобов Субботин Фокин Блохин Селиверстов
Пестов Кондратьев Силин Меркушев Лыткин Туров
""".split()

# Surnames from elsewhere in the country, each rarer than the list above.
OTHER_SURNAMES = """
Шевченко Бондаренко Коваленко Ткаченко Кравченко Мельниченко Олейник Ковальчук Савченко
Гарипов Хабибуллин Сафин Галиев Мухаметшин Ахметов Валиев Зарипов Алиев Мамедов Гасанов
Оганесян Петросян Саркисян Акопян Мкртчян Гогуадзе Беридзе Ким Цой Пак Шмидт Миллер
""".split()

# The long tail: a root and a suffix make a surname most people do not share.
TAIL_ROOTS = """
Абрам Агап Аким Бахт Бел Бобр Бор Бур Вар Вед Вил Вихр Глад Гол Горд Греб Губ Дав Дег Добр Дуб
Ерм Жар Жил Завь Зар Звяг Зык Иль Кал Кар Клим Клоч Коп Кос Крас Круг Кур Лад Лап Лис Лом Лук
Луп Мал Мар Мед Мин Мор Нар Нем Нов Ох Пал Пар Пес Пих Плот Пуш Рад Руд Рыж Сав Сел Сит Ског
Ском Смол Сом Стар Стол Сух Тал Тер Тих Тол Трух Уш Фил Хар Хлеб Цар Чер Чуд Шав Шир Шум Щег
Щеп Юр Яр Ясн
""".split()
TAIL_SUFFIXES = """
ов ин аев анов енко овский ецкий ушкин ихин уков ичев ятин ыгин алов унов ешин ых оватов
""".split()

# (name, weight, male patronymic, female patronymic)
MALE_NAMES = [
    ("Александр", 95, "Александрович", "Александровна"),
    ("Сергей", 90, "Сергеевич", "Сергеевна"),
    ("Дмитрий", 80, "Дмитриевич", "Дмитриевна"),
    ("Андрей", 75, "Андреевич", "Андреевна"),
    ("Алексей", 75, "Алексеевич", "Алексеевна"),
    ("Владимир", 60, "Владимирович", "Владимировна"),
    ("Иван", 45, "Иванович", "Ивановна"),
    ("Евгений", 45, "Евгеньевич", "Евгеньевна"),
    ("Михаил", 45, "Михайлович", "Михайловна"),
    ("Николай", 40, "Николаевич", "Николаевна"),
    ("Игорь", 35, "Игоревич", "Игоревна"),
    ("Максим", 35, "Максимович", "Максимовна"),
    ("Юрий", 30, "Юрьевич", "Юрьевна"),
    ("Олег", 30, "Олегович", "Олеговна"),
    ("Павел", 30, "Павлович", "Павловна"),
    ("Виктор", 28, "Викторович", "Викторовна"),
    ("Роман", 28, "Романович", "Романовна"),
    ("Денис", 26, "Денисович", "Денисовна"),
    ("Артем", 25, "Артемович", "Артемовна"),
    ("Антон", 22, "Антонович", "Антоновна"),
    ("Константин", 20, "Константинович", "Константиновна"),
    ("Вадим", 15, "Вадимович", "Вадимовна"),
    ("Илья", 18, "Ильич", "Ильинична"),
    ("Кирилл", 16, "Кириллович", "Кирилловна"),
    ("Никита", 15, "Никитич", "Никитична"),
    ("Егор", 12, "Егорович", "Егоровна"),
    ("Владислав", 14, "Владиславович", "Владиславовна"),
    ("Станислав", 12, "Станиславович", "Станиславовна"),
    ("Виталий", 14, "Витальевич", "Витальевна"),
    ("Василий", 14, "Васильевич", "Васильевна"),
    ("Анатолий", 14, "Анатольевич", "Анатольевна"),
    ("Геннадий", 10, "Геннадьевич", "Геннадьевна"),
    ("Валерий", 10, "Валерьевич", "Валерьевна"),
    ("Григорий", 8, "Григорьевич", "Григорьевна"),
    ("Руслан", 12, "Русланович", "Руслановна"),
    ("Тимур", 9, "Тимурович", "Тимуровна"),
    ("Борис", 8, "Борисович", "Борисовна"),
    ("Петр", 8, "Петрович", "Петровна"),
    ("Леонид", 7, "Леонидович", "Леонидовна"),
    ("Федор", 6, "Федорович", "Федоровна"),
    ("Вячеслав", 12, "Вячеславович", "Вячеславовна"),
    ("Георгий", 6, "Георгиевич", "Георгиевна"),
    ("Степан", 5, "Степанович", "Степановна"),
]
FEMALE_NAMES = [
    ("Елена", 60),
    ("Ольга", 55),
    ("Наталья", 55),
    ("Татьяна", 50),
    ("Ирина", 45),
    ("Светлана", 40),
    ("Анна", 40),
    ("Мария", 30),
    ("Екатерина", 35),
    ("Юлия", 30),
    ("Марина", 25),
    ("Анастасия", 25),
    ("Людмила", 20),
    ("Галина", 15),
    ("Надежда", 15),
    ("Оксана", 15),
    ("Валентина", 10),
    ("Дарья", 15),
    ("Ксения", 12),
    ("Алина", 10),
    ("Виктория", 15),
    ("Вера", 8),
    ("Любовь", 8),
    ("Лариса", 10),
]

COMPANY_ROOTS = """
Авто Транс Строй Тех Пром Агро Евро Мега Сиб Волга Урал Дон Нева Альфа Вектор Регион Инвест
Торг Сервис Эко Карго Дор Энерго Газ Лес Хим Мет Спец Гарант Профи Старт Север Юг Восток
""".split()
COMPANY_TAILS = """
транс строй сервис логистик торг трейд групп маш комплект снаб монтаж проект ресурс партнер
лайн тех пром экспресс
""".split()
COMPANY_FORMS = [("ООО", 80), ("АО", 6), ("ЗАО", 4), ("ПАО", 1)]

_TRANSLIT = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
        "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
        "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
        "ч": "ch", "ш": "sh", "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
        "я": "ya", " ": "", "-": "", "+": "", '"': "",
    }
)  # fmt: skip
MAIL_DOMAINS = [
    ("mail.ru", 40),
    ("yandex.ru", 30),
    ("gmail.com", 15),
    ("bk.ru", 5),
    ("list.ru", 4),
    ("inbox.ru", 3),
    ("rambler.ru", 3),
]

# Mobile codes (DEF) that phonenumbers knows as valid for every subscriber number.
MOBILE_CODES = [
    (900, 4), (901, 3), (902, 3), (903, 8), (904, 3), (905, 6), (906, 5), (908, 4), (909, 5),
    (910, 6), (911, 5), (912, 4), (913, 4), (914, 3), (915, 5), (916, 10), (917, 6), (918, 4),
    (919, 3), (920, 3), (921, 4), (925, 8), (926, 10), (927, 4), (929, 4), (950, 3), (951, 3),
    (952, 3), (953, 3), (960, 3), (961, 3), (962, 3), (963, 4), (964, 3), (965, 5), (966, 3),
    (967, 3), (968, 4), (977, 5), (980, 2), (985, 5), (999, 5),
]  # fmt: skip
LANDLINE_CODES = [(495, 6), (499, 3), (812, 1), (498, 1)]

STREETS = """
Ленина Мира Гагарина Советская Садовая Лесная Школьная Победы Молодежная Центральная
Профсоюзная Новая Строителей Заводская Полевая Речная Луговая Парковая Октябрьская Комсомольская
""".split()
CITIES = [("Москва", 70), ("Химки", 6), ("Мытищи", 6), ("Балашиха", 6), ("Королев", 4)]
CITIES += [("Красногорск", 4), ("Одинцово", 4)]

# --- cars -------------------------------------------------------------------------------

# (weight, make, model, body, WMI, VDS, first year, last year, configurations split by /)
VIN_MODELS: list[tuple[int, str, str, str, str, str, int, int, str]] = [
    (60, "LADA", "GRANTA", "седан (2190_)", "XTA", "21901", 2011, 2025, "Стандарт/Норма/Люкс"),
    (40, "LADA", "VESTA", "седан (2180_)", "XTA", "GFL11", 2015, 2025, "Comfort/Luxe"),
    (30, "LADA", "PRIORA", "седан (2170_)", "XTA", "21703", 2007, 2018, "Норма/Люкс"),
    (25, "LADA", "KALINA", "хэтчбек (1119_)", "XTA", "11193", 2004, 2018, "Стандарт/Норма"),
    (18, "LADA", "LARGUS", "универсал (R90_)", "XTA", "RS015", 2012, 2025, "Норма/Люкс"),
    (25, "LADA", "4x4", "(2121_, 21214_)", "XTA", "21214", 1998, 2025, ""),
    (15, "LADA", "2107", "седан (2107_)", "XTA", "21070", 1998, 2012, ""),
    (28, "KIA", "RIO", "III седан (UB)", "Z94", "CB41A", 2011, 2017, "Comfort/Prestige"),
    (30, "KIA", "RIO", "IV седан (FB)", "Z94", "C241B", 2017, 2024, "Classic/Comfort"),
    (20, "KIA", "SPORTAGE", "IV (QL, QLE)", "XWE", "PC81D", 2016, 2022, "Luxe/Prestige"),
    (12, "KIA", "CEE'D", "(JD)", "U5Y", "HC51A", 2012, 2018, ""),
    (30, "HYUNDAI", "SOLARIS", "седан (RB)", "Z94", "CT41D", 2010, 2017, "Active/Comfort"),
    (25, "HYUNDAI", "SOLARIS", "II седан (HCR)", "Z94", "K241C", 2017, 2023, "Active/Elegance"),
    (18, "HYUNDAI", "CRETA", "(GS)", "Z94", "G2813", 2016, 2021, "Start/Comfort"),
    (12, "HYUNDAI", "TUCSON", "(TL)", "XWE", "J81BD", 2015, 2021, ""),
    (15, "TOYOTA", "CAMRY", "седан (_V5_)", "XW7", "BF4FK", 2011, 2017, "Стандарт/Элеганс"),
    (15, "TOYOTA", "CAMRY", "седан (_V7_)", "XW7", "BK3HK", 2017, 2024, "Классик/Престиж"),
    (14, "TOYOTA", "RAV 4", "IV (_A4_)", "JTM", "RFREV", 2013, 2019, ""),
    (10, "TOYOTA", "COROLLA", "седан (_E15_)", "NMT", "BV40E", 2007, 2013, ""),
    (6, "TOYOTA", "COROLLA", "седан (_E12J_,_E12T_)", "NMT", "BM28E", 2001, 2007, ""),
    (8, "TOYOTA", "LAND CRUISER PRADO", "(_J15_)", "JTE", "BU3FJ", 2009, 2023, ""),
    (25, "VW", "POLO", "седан (612, 602)", "XW8", "ZZZ61", 2010, 2020, "Trendline/Comfortline"),
    (12, "VW", "TIGUAN", "(5N_)", "XW8", "ZZZ5N", 2008, 2016, ""),
    (6, "VW", "PASSAT", "B7 (362)", "WVW", "ZZZ3C", 2010, 2015, ""),
    (22, "RENAULT", "LOGAN", "I (LS_)", "X7L", "LSRAH", 2005, 2014, "Authentique/Expression"),
    (20, "RENAULT", "DUSTER", "(HS_)", "X7L", "HSRAH", 2011, 2021, "Expression/Privilege"),
    (12, "RENAULT", "SANDERO", "I (BS_)", "X7L", "BSRB1", 2009, 2014, ""),
    (12, "SKODA", "OCTAVIA", "II (1Z3)", "TMB", "DA41Z", 2004, 2013, "Ambiente/Elegance"),
    (14, "SKODA", "OCTAVIA", "III (5E3)", "XW8", "AN2NE", 2013, 2020, "Active/Ambition"),
    (14, "SKODA", "RAPID", "(NH3)", "XW8", "AC1NH", 2014, 2020, ""),
    (14, "NISSAN", "QASHQAI", "(J10, JJ10)", "SJN", "FAAJ1", 2007, 2013, ""),
    (10, "NISSAN", "X-TRAIL", "(T31)", "JN1", "TANT3", 2007, 2014, ""),
    (12, "NISSAN", "ALMERA", "III (G15)", "Z8N", "AAG15", 2013, 2018, ""),
    (12, "MITSUBISHI", "OUTLANDER", "III (GG_W, GF_W, ZJ)", "Z8T", "XVGF2", 2012, 2021, ""),
    (10, "MITSUBISHI", "LANCER", "X седан (CY_A, CZ_A)", "JMB", "SRCY4", 2007, 2015, ""),
    (16, "FORD", "FOCUS", "II седан (DB_, FCH, DH)", "X9F", "SXXEE", 2005, 2011, ""),
    (14, "FORD", "FOCUS", "III (DYB)", "X9F", "5XXEE", 2011, 2019, "Trend/Titanium"),
    (6, "FORD", "MONDEO", "IV (BA7)", "X9F", "DXXEE", 2007, 2014, ""),
    (14, "CHEVROLET", "NIVA", "(2123)", "X9L", "21230", 2002, 2020, "L/GLC"),
    (10, "CHEVROLET", "LACETTI", "седан (J200)", "KL1", "NF196", 2004, 2013, ""),
    (6, "CHEVROLET", "AVEO", "седан (T250, T255)", "KL1", "SF69Y", 2006, 2012, ""),
    (6, "BMW", "3", "(E90)", "WBA", "PK510", 2005, 2012, ""),
    (6, "BMW", "X5", "(E70)", "WBA", "FE410", 2007, 2013, ""),
    (6, "MERCEDES-BENZ", "E-CLASS", "(W212)", "WDD", "21205", 2009, 2016, ""),
    (8, "MAZDA", "CX-5", "(KE, GH)", "JMZ", "KE2W7", 2011, 2017, ""),
    (6, "MAZDA", "6", "седан (GH)", "JMZ", "GH12F", 2007, 2012, ""),
    (8, "GEELY", "COOLRAY", "(SX11)", "Y4K", "8P28A", 2020, 2025, ""),
    (8, "CHERY", "TIGGO 4", "(T17)", "LVV", "DB21B", 2019, 2025, ""),
    (6, "HAVAL", "JOLION", "(A01)", "XZG", "FF04A", 2021, 2025, ""),
]  # fmt: skip
# Japanese-market cars: a frame number (model code, dash, serial) instead of a VIN.
FRAME_MODELS: list[tuple[int, str, str, str, str, int, int, int]] = [
    (30, "TOYOTA", "COROLLA FIELDER", "универсал (_E12_)", "NZE121", 7, 2000, 2006),
    (20, "TOYOTA", "PRIUS", "хэтчбек (NHW20)", "NHW20", 7, 2003, 2009),
    (10, "TOYOTA", "MARK II", "седан (GX110)", "GX110", 7, 2000, 2004),
    (20, "NISSAN", "NOTE", "хэтчбек (E12)", "E12", 6, 2012, 2020),
    (20, "HONDA", "FIT", "хэтчбек (GD1)", "GD1", 7, 2001, 2007),
    (10, "TOYOTA", "VITZ", "хэтчбек (SCP10)", "SCP10", 7, 1999, 2005),
    (10, "SUBARU", "FORESTER", "(SG5)", "SG5", 6, 2002, 2007),
    (10, "MAZDA", "DEMIO", "хэтчбек (DY3W)", "DY3W", 6, 2002, 2007),
    (10, "TOYOTA", "ALLION", "седан (NZT260)", "NZT260", 7, 2007, 2016),
]
FRAME_SHARE = 0.07

PLATE_LETTERS = "АВЕКМНОРСТУХ"
REGIONS = [
    ("77", 20), ("97", 10), ("99", 8), ("177", 10), ("197", 8), ("199", 7), ("777", 5),
    ("799", 3), ("977", 2), ("50", 8), ("150", 5), ("190", 4), ("750", 2), ("90", 3),
    ("78", 1), ("69", 1), ("71", 1), ("40", 1), ("33", 1), ("62", 1), ("16", 1), ("52", 1),
]  # fmt: skip
FAR_EAST_REGIONS = [("25", 5), ("125", 4), ("27", 2), ("38", 2), ("54", 2), ("154", 1)]

VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # 1980 = A, 2001 = 1, 2010 = A again
_VIN_VALUES = {**{str(d): d for d in range(10)}}
_VIN_VALUES.update(zip("ABCDEFGH", range(1, 9), strict=True))
_VIN_VALUES.update(zip("JKLMN", range(1, 6), strict=True))
_VIN_VALUES.update({"P": 7, "R": 9})
_VIN_VALUES.update(zip("STUVWXYZ", range(2, 10), strict=True))
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

# --- works and goods --------------------------------------------------------------------

# (work, article, norm hours in thousandths)
WORKS = [
    ("Замена масла в двигателе", "Р-0001", 500),
    ("Замена масляного фильтра", "Р-0002", 300),
    ("Замена воздушного фильтра", "Р-0003", 200),
    ("Замена салонного фильтра", "Р-0004", 300),
    ("Замена тормозных колодок передних", "Р-0010", 1000),
    ("Замена тормозных колодок задних", "Р-0011", 1200),
    ("Замена тормозных дисков передних", "Р-0012", 1500),
    ("Компьютерная диагностика", "Р-0020", 800),
    ("Диагностика ходовой части", "Р-0021", 500),
    ("Замена ремня ГРМ", "Р-0030", 3500),
    ("Замена свечей зажигания", "Р-0031", 600),
    ("Замена амортизатора переднего", "Р-0040", 1400),
    ("Замена амортизатора заднего", "Р-0041", 1100),
    ("Замена ступичного подшипника", "Р-0042", 1800),
    ("Замена рулевой тяги", "Р-0043", 1000),
    ("Развал-схождение", "Р-0050", 1000),
    ("Шиномонтаж (4 колеса)", "Р-0051", 1200),
    ("Замена сцепления", "Р-0060", 4000),
    ("Заправка кондиционера", "Р-0070", 800),
    ("Замена антифриза", "Р-0071", 1000),
    ("Замена аккумулятора", "Р-0072", 300),
]
WORK_WEIGHTS = [30, 28, 15, 12, 14, 8, 6, 16, 14, 4, 8, 5, 4, 4, 4, 10, 12, 2, 6, 5, 4]
# (item, catalogue number, maker, retail price in kopecks, (quantities in thousandths))
GOODS = [
    ("Масло моторное 5W-40 4 л", "550046364", "SHELL", 285000, (1000,)),
    ("Масло моторное 5W-30 (розлив), л", "152089", "MOBIL", 72000, (4000, 4500, 5000)),
    ("Фильтр масляный", "W 712/75", "MANN-FILTER", 65000, (1000,)),
    ("Фильтр воздушный", "C 27 009", "MANN-FILTER", 98000, (1000,)),
    ("Фильтр салонный", "CU 2939", "MANN-FILTER", 112000, (1000,)),
    ("Колодки тормозные передние", "GDB1550", "TRW", 324000, (1000,)),
    ("Колодки тормозные задние", "P 83 042", "BREMBO", 289000, (1000,)),
    ("Диск тормозной передний", "09.A913.11", "BREMBO", 415000, (2000,)),
    ("Свеча зажигания", "BKR6E", "NGK", 42000, (4000,)),
    ("Ремень ГРМ", "5579XS", "GATES", 356000, (1000,)),
    ("Антифриз G12 5 л", "430206030", "FELIX", 125000, (1000, 2000)),
    ("Аккумулятор 60 Ач", "560409054", "VARTA", 899000, (1000,)),
    ("Амортизатор передний", "334841", "KAYABA", 612000, (1000, 2000)),
    ("Амортизатор задней подвески", "2108-2915004", "", 13000, (1000,)),
    ("Подшипник ступицы", "VKBA 3525", "SKF", 398000, (1000,)),
    ("Щетка стеклоочистителя", "3397118933", "BOSCH", 154000, (1000, 2000)),
    ("Лампа H7", "64210", "OSRAM", 45000, (1000, 2000)),
    ("Тяга рулевая", "LR6082", "LEMFORDER", 287000, (1000,)),
]
GOODS_WEIGHTS = [20, 14, 30, 16, 14, 12, 6, 5, 8, 3, 6, 3, 4, 2, 3, 6, 5, 3]
REPAIR_TYPES = [("ТО", 40), ("Ремонт", 35), ("Диагностика", 12), ("Шиномонтаж", 8)]
REPAIR_TYPES += [("Гарантийный ремонт", 3), ("Кузовной ремонт", 2)]
COMPLAINTS = [
    "Стучит в подвеске спереди справа",
    "Скрип тормозов",
    "Горит Check Engine",
    "Плановое ТО",
    "Не работает кондиционер",
    "Вибрация руля на скорости",
    "Течь масла",
    "Тяжело заводится",
]
BAYS = ["Пост 1", "Пост 2", "Пост 3", "Пост 4", "Пост 5", "Шиномонтаж", "Развал-схождение"]

# (kind, direction, text, share)
EVENTS = [
    (EventKind.CALL, Direction.OUTGOING, "Напомнили о плановом ТО", 14),
    (EventKind.CALL, Direction.OUTGOING, "Согласовали дополнительные работы", 8),
    (EventKind.CALL, Direction.OUTGOING, "Сообщили о готовности автомобиля", 8),
    (EventKind.CALL, Direction.INCOMING, "Спрашивал стоимость ТО", 10),
    (EventKind.CALL, Direction.INCOMING, "Просит перезвонить", 6),
    (EventKind.CALL, Direction.INCOMING, "Уточнял наличие запчастей", 6),
    (EventKind.SMS, Direction.OUTGOING, "Ваш автомобиль готов к выдаче", 8),
    (EventKind.SMS, Direction.OUTGOING, "Напоминаем о записи на завтра", 6),
    (EventKind.EMAIL, Direction.OUTGOING, "Отправлен счет на оплату", 4),
    (EventKind.EMAIL, Direction.INCOMING, "Просит акт сверки", 2),
    (EventKind.TELEGRAM, Direction.INCOMING, "Когда будет готова машина?", 4),
    (EventKind.TELEGRAM, Direction.OUTGOING, "Ваш заказ поступил на склад", 3),
    (EventKind.VISIT, Direction.INCOMING, "Приехал на диагностику без записи", 8),
    (EventKind.VISIT, Direction.INCOMING, "Оставил автомобиль на ночь", 3),
    (EventKind.NOTE, Direction.OUTGOING, "Просит звонить только после 18:00", 4),
    (EventKind.NOTE, Direction.OUTGOING, "Возит запчасти сам", 3),
]
CALL_RESULTS = ["Дозвонились", "Дозвонились", "Дозвонились", "Не ответил", "Перезвонить"]
DELIVERY = ["delivered", "delivered", "delivered", "sent", "failed"]

# Clients #2.. each show one case, so that even a small demo has every state and filter.
SHOWCASE: list[tuple[str, DocState | None]] = [
    ("work_order", DocState.REQUEST),
    ("work_order", DocState.IN_PROGRESS),
    ("work_order", DocState.COMPLETED),
    ("work_order", DocState.CLOSED),
    ("work_order", DocState.CANCELLED),
    ("customer_order", DocState.OPEN),
    ("customer_order", DocState.CLOSED),
    ("customer_order", DocState.CANCELLED),
    ("repair_request", DocState.OPEN),
    ("repair_request", DocState.CLOSED),
    ("repair_plan", DocState.POSTED),
    ("booking_today", None),
    ("booking_today", None),
    ("new_event", None),
    ("work_order", DocState.IN_PROGRESS),
    ("customer_order", DocState.OPEN),
]


class DemoRandom(random.Random):
    """``random.Random`` with the simple draws done by one ``random()`` each: several times
    faster than the exact integer versions, and just as deterministic per seed."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq: Sequence[Any]) -> Any:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]


class _Weighted:
    """Weighted choice by bisection over cumulative weights (faster than rng.choices)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, pairs: Sequence[tuple[Any, float]]) -> None:
        self.items = [item for item, _ in pairs]
        self.cum = list(itertools.accumulate(w for _, w in pairs))
        self.total = self.cum[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def feminine(surname: str) -> str:
    """The female form of a Russian surname (Петров -> Петрова, Вишневский -> Вишневская)."""
    if surname.endswith(("ов", "ев", "ин", "ын")):
        return surname + "а"
    if surname.endswith(("ский", "цкий")):
        return surname[:-2] + "ая"
    return surname


def translit(text: str) -> str:
    return text.lower().translate(_TRANSLIT)


def inn_checked(rng: random.Random, length: int, region: str) -> str:
    """A tax id (ИНН) with valid check digits: 10 digits for companies, 12 for people."""
    if length == 10:
        body = region + "".join(str(rng.randrange(10)) for _ in range(7))
        return body + _inn_digit(body, (2, 4, 10, 3, 5, 9, 4, 6, 8))
    body = region + "".join(str(rng.randrange(10)) for _ in range(8))
    body += _inn_digit(body, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8))
    return body + _inn_digit(body, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8))


def _inn_digit(digits: str, weights: tuple[int, ...]) -> str:
    return str(sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 % 10)


def vin_check_digit(vin: str) -> str:
    total = sum(_VIN_VALUES[ch] * w for ch, w in zip(vin, _VIN_WEIGHTS, strict=True))
    rest = total % 11
    return "X" if rest == 10 else str(rest)


def line_amount(price: int, qty_milli: int, norm_hours_milli: int | None, discount_bp: int) -> int:
    """Kopecks of a line: price x qty (x norm hours for works), less the discount."""
    gross = price * qty_milli * (1000 if norm_hours_milli is None else norm_hours_milli)
    gross = (gross + 500_000) // 1_000_000
    return gross - (gross * discount_bp + 5_000) // 10_000


# --- the generator ----------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """What the database already holds."""

    clients: int
    max_ids: dict[str, int]
    counters: dict[str, int]
    staff: dict[int, int]  # telegram id -> id
    price_types: dict[str, int]  # code -> id
    warehouses: dict[str, int]  # name -> id


@dataclass(slots=True)
class _Car:
    id: int
    mileage: int
    created: int
    last: int


@dataclass(slots=True)
class _Client:
    id: int
    kind: str
    created: int
    last: int
    discount_bp: int
    wholesale: bool
    manager_id: int | None
    cars: list[_Car]


class _Shop:
    """Makes the rows; timestamps are integer seconds (UTC) until a row is written."""

    def __init__(
        self,
        rng: random.Random,
        total: int,
        now: datetime,
        tz: ZoneInfo,
        state: _State,
        bays: Sequence[str] = BAYS,
    ) -> None:
        self.rng = rng
        # Moments come from a stream of their own, drawn where a choice depends on ``now``
        # too: another ``now`` then moves the times but changes nothing else.
        self.trng = DemoRandom(rng.getrandbits(64))
        self.total = total
        self.now = int(now.timestamp())
        self.tz = tz
        self.out = RowBuffer()
        self.summary = DemoSummary()
        self.ids = {name: state.max_ids.get(name, 0) for name in Base.metadata.tables}
        self.numbers = {t.value: state.counters.get(t.value, 0) for t in DocType}
        self.state = state
        self.bays = list(bays)  # a full day opens another bay: a big demo shop has many
        self.base_bays = len(self.bays)
        self.bay_times: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (bay, day)
        self.phones: set[str] = {SEED_PHONE}
        self.plates: set[str] = {SEED_PLATE}
        self.vins: set[str] = {SEED_VIN}
        self._days(now)
        self.surnames = _Weighted(
            [(s, 1.0 / (rank + 15)) for rank, s in enumerate(SURNAMES)]
            + [(s, 0.0025) for s in OTHER_SURNAMES]
        )
        self.male = _Weighted([((n, pm, pf), w) for n, w, pm, pf in MALE_NAMES])
        self.patronymic = _Weighted([((pm, pf), w) for _, w, pm, pf in MALE_NAMES])
        self.female = _Weighted(FEMALE_NAMES)
        self.mail = _Weighted(MAIL_DOMAINS)
        self.mobile = _Weighted(MOBILE_CODES)
        self.landline = _Weighted(LANDLINE_CODES)
        self.company_forms = _Weighted(COMPANY_FORMS)
        self.cities = _Weighted(CITIES)
        self.regions = _Weighted(REGIONS)
        self.far_east = _Weighted(FAR_EAST_REGIONS)
        self.vin_models = _Weighted([(m, m[0]) for m in VIN_MODELS])
        self.frame_models = _Weighted([(m, m[0]) for m in FRAME_MODELS])
        self.works = _Weighted(list(zip(WORKS, WORK_WEIGHTS, strict=True)))
        self.goods = _Weighted(list(zip(GOODS, GOODS_WEIGHTS, strict=True)))
        self.repair_types = _Weighted(REPAIR_TYPES)
        self.events = _Weighted([(e[:3], e[3]) for e in EVENTS])
        self._latin: dict[str, str] = {}
        self.year = now.astimezone(tz).year
        # Cars wait here until the chunk is done and their last activity is known.
        self.pending_cars: list[tuple[Any, ...]] = []

    # --- ids, time ----------------------------------------------------------------------

    def next_id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def number(self, doc_type: DocType) -> str:
        self.numbers[doc_type.value] += 1
        return format_number(PREFIX, self.numbers[doc_type.value])

    def _days(self, now: datetime) -> None:
        """Local midnights (UTC seconds) from 10 years back to 60 days ahead."""
        today = now.astimezone(self.tz).date()
        first = today - timedelta(days=3660)
        self.midnights = [
            int(datetime.combine(first + timedelta(days=k), dtime.min, self.tz).timestamp())
            for k in range(3660 + 62)
        ]
        self.today = 3660

    def day_of(self, ts: int) -> int:
        m = self.midnights
        k = max(0, min(len(m) - 2, (ts - m[0]) // DAY))
        while k > 0 and m[k] > ts:
            k -= 1
        while k < len(m) - 2 and m[k + 1] <= ts:
            k += 1
        return k

    def at(self, day: int, minute_of_day: int) -> int:
        return self.midnights[day] + minute_of_day * 60

    def work_time(self, lo: int, hi: int) -> int:
        """A moment in working hours (9:00-20:00 local) between lo and hi, to the minute."""
        if hi <= lo:
            return hi
        trng = self.trng
        day = trng.randint(self.day_of(lo), self.day_of(hi))
        ts = self.at(day, trng.randrange(9 * 60, 20 * 60))
        return min(max(ts, lo), hi)

    def dt(self, ts: int) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    # --- reference data -------------------------------------------------------------------

    def reference(self) -> None:
        out, st = self.out, self.state
        created = self.dt(self.now - 4 * 365 * DAY)
        self.orgs = []
        for name, region in (('ООО "Автоцентр Север"', "77"), ('ООО "Автоцентр Юг"', "50")):
            oid = self.next_id("organizations")
            inn = inn_checked(self.rng, 10, region)
            out.add("organizations", {"id": oid, "name": name, "inn": inn})
            self.orgs.append(oid)
        self.departments: dict[tuple[int, str], int] = {}
        for oid in self.orgs:
            for dept in ("Сервис", "Магазин запчастей"):
                did = self.next_id("departments")
                out.add("departments", {"id": did, "organization_id": oid, "name": dept})
                self.departments[oid, dept] = did
        self.price_type: dict[str, int] = {}
        for code, name in (("retail", "Розничная"), ("wholesale", "Оптовая")):
            if code in st.price_types:
                self.price_type[code] = st.price_types[code]
                continue
            pid = self.next_id("price_types")
            out.add("price_types", {"id": pid, "code": code, "name": name})
            self.price_type[code] = pid
        self.price_list()
        self.warehouses = []
        for name in ("Основной склад", "Склад шин"):
            if name in st.warehouses:
                self.warehouses.append(st.warehouses[name])
                continue
            wid = self.next_id("warehouses")
            out.add("warehouses", {"id": wid, "name": name})
            self.warehouses.append(wid)
        people = [
            ("Соколов Андрей Викторович", Role.ADMIN),
            ("Кузнецова Елена Сергеевна", Role.MANAGER),
            ("Морозов Дмитрий Игоревич", Role.MANAGER),
            ("Волкова Анна Павловна", Role.MANAGER),
            ("Петров Сергей Николаевич", Role.MASTER),
            ("Лебедев Алексей Юрьевич", Role.MASTER),
            ("Козлов Игорь Владимирович", Role.MASTER),
            ("Новиков Павел Андреевич", Role.MASTER),
            ("Зайцев Максим Олегович", Role.MASTER),
            ("Белова Ольга Александровна", Role.CASHIER),
        ]
        self.staff: dict[Role, list[int]] = {role: [] for role in Role}
        for n, (name, role) in enumerate(people, start=1):
            telegram_id = STAFF_TELEGRAM_BASE + n
            sid = st.staff.get(telegram_id)
            if sid is None:
                sid = self.next_id("staff")
                out.add(
                    "staff",
                    {
                        "id": sid,
                        "telegram_id": telegram_id,
                        "name": name,
                        "role": role.value,
                        "locale": "ru",
                        "active": True,
                        "created_at": created,
                    },
                )
                self.summary.staff += 1
            self.staff[role].append(sid)
        self.managers = self.staff[Role.MANAGER]
        self.masters = self.staff[Role.MASTER]
        self.cashiers = self.staff[Role.CASHIER] + self.staff[Role.ADMIN]

    def price_list(self) -> None:
        """The shop's price list: the demo's works and goods, retail and wholesale (the
        prices the demo documents use), unless a price list is there already."""
        if self.state.max_ids.get("price_items"):
            return
        retail, wholesale = self.price_type["retail"], self.price_type["wholesale"]
        items: list[tuple[LineKind, str, str, str | None, str, int | None, int, int]] = [
            (LineKind.WORK, work, article, None, "н/ч", norm, 240_000, 200_000)
            for work, article, norm in WORKS
        ]
        items += [
            (LineKind.GOODS, item, cat, maker or None, "шт", None, price, price * 85 // 100)
            for item, cat, maker, price, _qty in GOODS
        ]
        for kind, name, number, maker, unit, norm, price, wholesale_price in items:
            iid = self.next_id("price_items")
            self.out.add(
                "price_items",
                {
                    "id": iid,
                    "kind": kind.value,
                    "name": name,
                    "name_key": normalize_name(name),
                    "catalogue_number": number,
                    "catalogue_key": normalize_code(number),
                    "maker": maker,
                    "unit": unit,
                    "norm_hours_milli": norm,
                    "active": True,
                    "updated_at": self.dt(self.now),
                },
            )
            for type_id, amount in ((retail, price), (wholesale, wholesale_price)):
                self.out.add(
                    "price_item_prices",
                    {"item_id": iid, "price_type_id": type_id, "price": amount},
                )

    # --- clients --------------------------------------------------------------------------

    def chunk(self, first: int, count: int) -> RowBuffer:
        """The rows of clients ``first + 1`` .. ``first + count`` (1-based in this demo),
        with whatever was made before (the reference data)."""
        for n in range(first + 1, first + count + 1):
            if n == 1:
                self.seed_client()
            else:
                self.client(n)
        self.flush_cars()
        rows, self.out = self.out, RowBuffer()
        return rows

    def created_ts(self, n: int) -> int:
        """Clients came over eight years, the lower ids first."""
        span = 8 * 365 * DAY
        base = self.now - span + span * (n - 1) // max(1, self.total)
        ts = base + self.trng.randrange(-10 * DAY, 10 * DAY)
        return min(ts, self.now - 2 * HOUR)

    def person_name(self) -> tuple[str, str, str, str | None, bool]:
        """(full name, surname, first name, patronymic, male)."""
        rng = self.rng
        if rng.random() < 0.65:
            surname = self.surnames.pick(rng)
        elif rng.random() < 0.9:
            surname = (
                TAIL_ROOTS[rng.randrange(len(TAIL_ROOTS))]
                + TAIL_SUFFIXES[rng.randrange(len(TAIL_SUFFIXES))]
            )
        else:
            surname = OTHER_SURNAMES[rng.randrange(len(OTHER_SURNAMES))]
        male = rng.random() < 0.72
        if male:
            first, _, _ = self.male.pick(rng)
        else:
            first = self.female.pick(rng)
            surname = feminine(surname)
        patronymic = None
        if rng.random() < 0.75:
            pm, pf = self.patronymic.pick(rng)
            patronymic = pm if male else pf
        full = f"{surname} {first}" + (f" {patronymic}" if patronymic else "")
        return full, surname, first, patronymic, male

    def latin(self, word: str) -> str:
        lat = self._latin.get(word)
        if lat is None:
            lat = self._latin[word] = translit(word)
        return lat

    def phone(self, landline: bool = False) -> str:
        rng = self.rng
        codes = self.landline if landline else self.mobile
        while True:
            value = f"7{codes.pick(rng)}{rng.randrange(10_000_000):07d}"
            if value not in self.phones:
                self.phones.add(value)
                return value

    def address(self) -> str:
        rng = self.rng
        city = self.cities.pick(rng)
        street = STREETS[rng.randrange(len(STREETS))]
        flat = f", кв. {rng.randint(1, 300)}" if rng.random() < 0.8 else ""
        return f"г. {city}, ул. {street}, д. {rng.randint(1, 120)}{flat}"

    def client(self, n: int) -> None:
        rng = self.rng
        cid = self.next_id("clients")
        created = self.created_ts(n)
        roll = rng.random()
        contacts: list[tuple[str, str, str | None]] = []
        inn = None
        if roll < 0.045:
            kind = ClientKind.COMPANY.value
            form = self.company_forms.pick(rng)
            root = COMPANY_ROOTS[rng.randrange(len(COMPANY_ROOTS))]
            tail = COMPANY_TAILS[rng.randrange(len(COMPANY_TAILS))]
            title = root + tail
            if rng.random() < 0.15:
                title += rng.choice(["-М", " Плюс", "-Центр", " 2000"])
            name = f'{form} "{title}"'
            inn = inn_checked(rng, 10, rng.choice(["77", "50", "77", "97"]))
            site = self.latin(title)
            if rng.random() < 0.8:
                contacts.append((ContactKind.PHONE.value, self.phone(landline=True), None))
            if rng.random() < 0.7:
                comment = rng.choice(["директор", "механик", "бухгалтерия", "завгар"])
                contacts.append((ContactKind.MOBILE.value, self.phone(), comment))
            if rng.random() < 0.9:
                box = rng.choice(["info", "office", "buh", "zakaz"])
                contacts.append((ContactKind.EMAIL.value, f"{box}@{site}.ru", None))
            if rng.random() < 0.6:
                contacts.append((ContactKind.ADDRESS.value, self.address(), "юридический"))
        elif roll < 0.06:
            kind = ClientKind.COMPANY.value
            _, surname, first, patronymic, _male = self.person_name()
            initials = f"{first[0]}." + (f"{patronymic[0]}." if patronymic else "")
            name = f"ИП {surname} {initials}"
            inn = inn_checked(rng, 12, rng.choice(["77", "50"]))
            contacts.append((ContactKind.MOBILE.value, self.phone(), None))
            if rng.random() < 0.7:
                mail = self.mail.pick(rng)
                contacts.append(
                    (ContactKind.EMAIL.value, f"ip.{self.latin(surname)}@{mail}", None)
                )
        else:
            kind = ClientKind.PERSON.value
            name, surname, first, _patronymic, _male = self.person_name()
            if rng.random() < 0.08:
                inn = inn_checked(rng, 12, rng.choice(["77", "50", "77"]))
            if rng.random() < 0.97:
                contacts.append((ContactKind.MOBILE.value, self.phone(), None))
            if rng.random() < 0.12:
                comment = rng.choice(["рабочий", "жена", "муж", "второй номер"])
                contacts.append((ContactKind.MOBILE.value, self.phone(), comment))
            if rng.random() < 0.35:
                local = self.latin(surname)
                style = rng.random()
                if style < 0.3:
                    local = f"{self.latin(first)}.{local}"
                elif style < 0.6:
                    local += str(rng.randint(1, 99))
                elif style < 0.75:
                    local += str(rng.randint(1960, 2005))
                contacts.append((ContactKind.EMAIL.value, f"{local}@{self.mail.pick(rng)}", None))
            if rng.random() < 0.06:
                contacts.append((ContactKind.ADDRESS.value, self.address(), None))
            if rng.random() < 0.02:
                handle = f"@{self.latin(first)}_{self.latin(surname)}"
                contacts.append((ContactKind.OTHER.value, f"Telegram {handle}", None))
        company = kind == ClientKind.COMPANY.value
        cards = []
        discount = 0
        if rng.random() < (0.4 if company else 0.2):
            discount = rng.choice([300, 500, 500, 700, 1000])
            cards.append(self.card(cid, discount, active=rng.random() < 0.95))
        wholesale = company and rng.random() < 0.6
        manager = self.managers[rng.randrange(len(self.managers))] if rng.random() < 0.7 else None
        c = _Client(cid, kind, created, created, discount, wholesale, manager, [])
        if company:
            ncars = 1 + min(int(rng.expovariate(1 / 2.5)), 20)
        else:
            r = rng.random()
            ncars = 0 if r < 0.04 else 1 if r < 0.82 else 2 if r < 0.97 else 3
        for _ in range(ncars):
            self.car(c, n)
        if rng.random() < 0.2:
            self.out.add(
                "client_masters",
                {"client_id": cid, "staff_id": self.masters[rng.randrange(len(self.masters))]},
            )
        self.activity(c)
        if 2 <= n < 2 + len(SHOWCASE):
            self.showcase(c, *SHOWCASE[n - 2])
        chat = CHAT_ID_BASE + cid if rng.random() < 0.03 else None
        self.write_client(c, name, inn, contacts, cards, chat)
        if company:
            self.summary.companies += 1

    def card(self, cid: int, discount_bp: int, active: bool = True) -> str:
        card_id = self.next_id("discount_cards")
        number = f"2{card_id:012d}"
        self.out.add(
            "discount_cards",
            {
                "id": card_id,
                "number": number,
                "client_id": cid,
                "discount_bp": discount_bp,
                "active": active,
            },
        )
        self.summary.cards += 1
        return number

    def write_client(
        self,
        c: _Client,
        name: str,
        inn: str | None,
        contacts: list[tuple[str, str, str | None]],
        cards: list[str],
        chat: int | None,
    ) -> None:
        out = self.out
        main_phone = next(
            (
                v
                for k, v, _ in contacts
                if k in (ContactKind.MOBILE.value, ContactKind.PHONE.value)
            ),
            None,
        )
        for kind, value, comment in contacts:
            out.add(
                "contact_info",
                {
                    "id": self.next_id("contact_info"),
                    "client_id": c.id,
                    "kind": kind,
                    "value": value,
                    "comment": comment,
                },
            )
        self.summary.contacts += len(contacts)
        created = self.dt(c.created)
        out.add(
            "clients",
            {
                "id": c.id,
                "name": name,
                "kind": c.kind,
                "relation": ClientRelation.BUYER.value,
                "inn": inn,
                "main_phone": main_phone,
                "price_type_id": self.price_type["wholesale" if c.wholesale else "retail"],
                "manager_id": c.manager_id,
                "organization_id": self.orgs[0] if c.id % 3 else self.orgs[1],
                "telegram_chat_id": chat,
                "notifications_off": False,
                "created_at": created,
                "updated_at": created,
                "last_activity_at": self.dt(c.last),
            },
        )
        terms = client_terms(name, inn, cards, [(k, v) for k, v, _ in contacts])
        self.terms("client", c.id, terms)
        self.summary.clients += 1

    def terms(self, owner_type: str, owner_id: int, terms: Sequence[Any]) -> None:
        for row in term_rows(owner_type, owner_id, terms):
            row["id"] = self.next_id("search_terms")
            self.out.add("search_terms", row)
        self.summary.search_terms += len(terms)

    # --- cars -----------------------------------------------------------------------------

    def plate(self, far_east: bool) -> str | None:
        rng = self.rng
        if rng.random() < 0.02:
            return None  # just bought, not registered yet
        letters = PLATE_LETTERS
        regions = self.far_east if far_east and rng.random() < 0.5 else self.regions
        while True:
            value = (
                letters[rng.randrange(12)]
                + f"{rng.randint(1, 999):03d}"
                + letters[rng.randrange(12)]
                + letters[rng.randrange(12)]
                + regions.pick(rng)
            )
            if value not in self.plates:
                self.plates.add(value)
                return value

    def vin(self, wmi: str, vds: str, year: int) -> str:
        rng = self.rng
        while True:
            plant = VIN_CHARS[rng.randrange(len(VIN_CHARS))]
            serial = f"{rng.randrange(1_000_000):06d}"
            tail = YEAR_CODES[(year - 1980) % 30] + plant + serial
            if wmi[0] in "XZ":  # Russian plants leave the check digit at 0
                value = f"{wmi}{vds}0{tail}"
            else:
                value = f"{wmi}{vds}?{tail}"
                value = value.replace("?", vin_check_digit(value.replace("?", "0")))
            if value not in self.vins:
                self.vins.add(value)
                return value

    def car(self, owner: _Client, n: int) -> _Car:
        rng = self.rng
        configuration = None
        if rng.random() < FRAME_SHARE:
            _, make, model, body, code, digits, y0, y1 = self.frame_models.pick(rng)
            year = rng.randint(y0, y1)
            vin = None
            body_number = f"{code}-{rng.randrange(10**digits):0{digits}d}"
            plate = self.plate(far_east=True)
        else:
            _, make, model, body, wmi, vds, y0, y1, configs = self.vin_models.pick(rng)
            year = rng.randint(y0, min(y1, self.year))
            vin = self.vin(wmi, vds, year) if rng.random() < 0.98 else None
            body_number = None
            if configs and rng.random() < 0.6:
                options = configs.split("/")
                configuration = options[rng.randrange(len(options))]
            plate = self.plate(far_east=False)
        car = self.write_car(
            owner, make, model, body, configuration, vin, body_number, plate, year
        )
        if n > 2 and rng.random() < 0.05:
            # Also driven by another client (family member, company driver).
            other = owner.id - rng.randint(1, min(30, n - 2))
            self.out.add(
                "client_cars",
                {"client_id": other, "car_id": car.id, "role": CarRole.DRIVER.value},
            )
            self.summary.client_cars += 1
        return car

    def write_car(
        self,
        owner: _Client,
        make: str,
        model: str,
        body: str,
        configuration: str | None,
        vin: str | None,
        body_number: str | None,
        plate: str | None,
        year: int,
    ) -> _Car:
        rng = self.rng
        car_id = self.next_id("cars")
        age = max(0, self.year - year)
        # 8-25 thousand km a year while new, half that after twelve years
        years = min(age, 12) + max(0, age - 12) / 2
        mileage = int(years * rng.randint(8_000, 25_000) + rng.randint(300, 15_000)) // 100 * 100
        created = owner.created + (0 if not owner.cars else self.trng.randrange(0, 400 * DAY))
        created = min(created, self.now - HOUR)
        car = _Car(car_id, mileage, created, created)
        owner.cars.append(car)
        name = f"{make}, {model} {body}"
        self.pending_cars.append(
            (car, name, make, model, body, configuration, vin, body_number, plate, year)
        )
        self.out.add(
            "client_cars",
            {"client_id": owner.id, "car_id": car_id, "role": CarRole.OWNER.value},
        )
        self.summary.client_cars += 1
        return car

    def flush_cars(self) -> None:
        """Cars are written once their last activity is known."""
        for (
            car,
            name,
            make,
            model,
            body,
            configuration,
            vin,
            body_number,
            plate,
            year,
        ) in self.pending_cars:
            self.out.add(
                "cars",
                {
                    "id": car.id,
                    "name": name,
                    "make": make,
                    "model": model,
                    "body": body,
                    "configuration": configuration,
                    "vin": vin,
                    "body_number": body_number,
                    "plate": plate,
                    "year": year,
                    "mileage": car.mileage,
                    "created_at": self.dt(car.created),
                    "last_activity_at": self.dt(car.last),
                },
            )
            self.terms("car", car.id, car_terms(plate, vin, body_number))
            self.summary.cars += 1
        self.pending_cars = []

    # --- activity -------------------------------------------------------------------------

    def activity(self, c: _Client) -> None:
        """Events, documents and bookings of a client, chosen at random."""
        rng = self.rng
        company = c.kind == ClientKind.COMPANY.value
        scale = 3.0 if company else 1.0
        r = rng.random()
        n_events = 0 if r < 0.6 else 1 if r < 0.85 else 2 if r < 0.95 else 3
        for _ in range(n_events):
            self.event(c, self.work_time(c.created, self.now))
        if c.cars:
            for _ in range(_count(rng, 0.085 * scale)):
                self.work_order(c, _pick_wo_state(rng))
            for _ in range(_count(rng, 0.015 * scale)):
                self.repair_request(c, rng.choice([DocState.OPEN, DocState.CLOSED]))
            if rng.random() < 0.015:
                self.repair_plan(c, self.work_time(c.created, self.now))
            if rng.random() < 0.01:
                self.booking(c, rng.randint(-30, 14))
        for _ in range(_count(rng, 0.045 * scale)):
            self.customer_order(c, _pick_co_state(rng))

    def showcase(self, c: _Client, what: str, state: DocState | None) -> None:
        if what in ("work_order", "repair_request", "repair_plan", "booking_today") and not c.cars:
            self.car(c, 0)
        if what == "work_order" and state is not None:
            self.work_order(c, state)
        elif what == "customer_order" and state is not None:
            self.customer_order(c, state)
        elif what == "repair_request" and state is not None:
            self.repair_request(c, state)
        elif what == "repair_plan":
            self.repair_plan(c, self.work_time(c.created, self.now))
        elif what == "booking_today":
            self.booking(c, 0)
        elif what == "new_event":
            self.event(c, self.now - self.trng.randrange(HOUR, DAY), new=True)

    def touch(self, c: _Client, car: _Car | None, ts: int) -> None:
        c.last = max(c.last, ts)
        if car is not None:
            car.last = max(car.last, ts)

    def staff_member(self, pool: list[int]) -> int:
        return pool[self.rng.randrange(len(pool))]

    def event(self, c: _Client, ts: int, *, new: bool = False) -> None:
        rng = self.rng
        kind, direction, text = self.events.pick(rng)
        car = c.cars[rng.randrange(len(c.cars))] if c.cars and rng.random() < 0.6 else None
        author = c.manager_id or self.staff_member(self.managers)
        result = delivery = None
        if kind is EventKind.CALL:
            result = CALL_RESULTS[rng.randrange(len(CALL_RESULTS))]
        elif kind in (EventKind.SMS, EventKind.EMAIL, EventKind.TELEGRAM):
            delivery = DELIVERY[rng.randrange(len(DELIVERY))]
        recent = self.now - ts < 3 * DAY
        chance = self.trng.random()
        if new or chance < (0.6 if recent else 0.01):
            processed_at = processed_by = None
            self.summary.unprocessed_events += 1
        else:
            processed_at = self.dt(min(self.now, ts + self.trng.randrange(300, DAY)))
            processed_by = author
        self.out.add(
            "events",
            {
                "id": self.next_id("events"),
                "client_id": c.id,
                "car_id": car.id if car else None,
                "kind": kind.value,
                "direction": direction.value,
                "author_id": author,
                "text": text,
                "result": result,
                "delivery_status": delivery,
                "created_at": self.dt(ts),
                "processed_at": processed_at,
                "processed_by_id": processed_by,
            },
        )
        self.summary.events += 1
        self.touch(c, car, ts)

    # --- documents ------------------------------------------------------------------------

    def document(
        self,
        c: _Client,
        car: _Car | None,
        doc_type: DocType,
        state: DocState,
        ts: int,
        *,
        dept: str,
        master: int | None = None,
        base_id: int | None = None,
        repair_type: str | None = None,
        comment: str | None = None,
        amount: int = 0,
    ) -> dict[str, Any]:
        rng = self.rng
        doc_id = self.next_id("documents")
        org = self.orgs[0] if c.id % 3 else self.orgs[1]
        manager = c.manager_id or self.staff_member(self.managers)
        author = manager if rng.random() < 0.8 else self.staff_member(self.masters)
        mileage = None
        if car is not None and doc_type in (DocType.WORK_ORDER, DocType.REPAIR_REQUEST):
            # about 15 000 km a year before today's reading
            mileage = max(0, car.mileage - (self.now - ts) // DAY * 40) // 10 * 10
        row = {
            "id": doc_id,
            "doc_type": doc_type.value,
            "number": self.number(doc_type),
            "date": self.dt(ts),
            "state": state.value,
            "client_id": c.id,
            "car_id": car.id if car else None,
            "organization_id": org,
            "department_id": self.departments[org, dept],
            "author_id": author,
            "manager_id": manager,
            "master_id": master,
            "base_id": base_id,
            "repair_type": repair_type,
            "mileage": mileage,
            "comment": comment,
            "amount": amount,
            "updated_at": self.dt(ts),
        }
        self.out.add("documents", row)
        self.summary.documents += 1
        self.touch(c, car, ts)
        return row

    def line(
        self,
        doc_id: int,
        line_no: int,
        kind: LineKind,
        item: str,
        catalogue_number: str | None,
        maker: str | None,
        qty_milli: int,
        norm_hours_milli: int | None,
        price: int,
        discount_bp: int,
        shipped: bool = False,
    ) -> tuple[int, int]:
        line_id = self.next_id("document_lines")
        amount = line_amount(price, qty_milli, norm_hours_milli, discount_bp)
        self.out.add(
            "document_lines",
            {
                "id": line_id,
                "document_id": doc_id,
                "line_no": line_no,
                "kind": kind.value,
                "item": item,
                "catalogue_number": catalogue_number,
                "maker": maker or None,
                "qty_milli": qty_milli,
                "norm_hours_milli": norm_hours_milli,
                "price": price,
                "discount_bp": discount_bp,
                "amount": amount,
                "shipped_qty_milli": qty_milli if shipped and kind is LineKind.GOODS else 0,
            },
        )
        self.summary.document_lines += 1
        return line_id, amount

    def pick_goods(self, k: int) -> list[tuple[str, str, str, int, int]]:
        """k distinct goods as (item, catalogue number, maker, price, qty)."""
        rng, seen, picked = self.rng, set(), []
        for _ in range(k):
            item, cat, maker, price, qtys = self.goods.pick(rng)
            if item in seen:
                continue
            seen.add(item)
            picked.append((item, cat, maker, price, qtys[rng.randrange(len(qtys))]))
        return picked

    def price(self, c: _Client, retail: int) -> int:
        return retail * 85 // 100 if c.wholesale else retail

    def goods_lines(
        self, c: _Client, doc_id: int, goods: list[tuple[str, str, str, int, int]], start: int,
        shipped: bool,
    ) -> tuple[list[tuple[int, int]], int]:  # fmt: skip
        """Writes goods lines; returns [(line id, qty)] and their sum."""
        total, made = 0, []
        for i, (item, cat, maker, retail, qty) in enumerate(goods, start=start):
            line_id, amount = self.line(
                doc_id, i, LineKind.GOODS, item, cat, maker, qty, None,
                self.price(c, retail), c.discount_bp, shipped,
            )  # fmt: skip
            made.append((line_id, qty))
            total += amount
        return made, total

    def work_lines(self, c: _Client, doc_id: int, k: int) -> tuple[list[tuple[str, str]], int]:
        """Writes up to k distinct works; returns [(work, article)] and their sum."""
        rng, total, done = self.rng, 0, []
        per_hour = 200_000 if c.wholesale else 240_000  # kopecks per norm-hour
        for _ in range(k):
            work, article, norm = self.works.pick(rng)
            if (work, article) in done:
                continue
            done.append((work, article))
            _, amount = self.line(
                doc_id, len(done), LineKind.WORK, work, article, None, 1000, norm, per_hour,
                c.discount_bp,
            )  # fmt: skip
            total += amount
        return done, total

    def payment(self, c: _Client, base_id: int, amount: int, ts: int) -> None:
        rng = self.rng
        doc_id = self.document(
            c, None, DocType.PAYMENT, DocState.POSTED, ts, dept="Сервис", base_id=base_id,
            amount=amount,
        )["id"]  # fmt: skip
        r = rng.random()
        method = (
            PaymentMethod.CASH_DESK
            if r < 0.7
            else PaymentMethod.CASH_RECEIPT
            if r < 0.95
            else PaymentMethod.TELEGRAM
        )
        telegram = method is PaymentMethod.TELEGRAM
        self.out.add(
            "payments",
            {
                "document_id": doc_id,
                "method": method.value,
                "idempotency_key": f"demo-{doc_id}" if telegram else None,
                "telegram_charge_id": f"demo-tg-{doc_id}" if telegram else None,
                "provider_charge_id": f"demo-pr-{doc_id}" if telegram else None,
                "cashier_id": None if telegram else self.staff_member(self.cashiers),
            },
        )
        self.summary.payments += 1

    def work_order(self, c: _Client, state: DocState) -> None:
        rng = self.rng
        car = c.cars[rng.randrange(len(c.cars))]
        lo = max(c.created, car.created)
        if state in (DocState.CLOSED, DocState.CANCELLED):
            ts = self.work_time(lo, self.now - DAY)
        elif state is DocState.COMPLETED:
            ts = self.work_time(max(lo, self.now - 4 * DAY), self.now - 2 * HOUR)
        elif state is DocState.IN_PROGRESS:
            ts = self.work_time(max(lo, self.now - 5 * DAY), self.now - HOUR)
        else:  # request: made recently, the car comes in the next days
            ts = self.work_time(max(lo, self.now - 2 * DAY), self.now)
        master = self.staff_member(self.masters)
        repair_type = self.repair_types.pick(rng)
        comment = COMPLAINTS[rng.randrange(len(COMPLAINTS))] if rng.random() < 0.3 else None
        doc = self.document(
            c, car, DocType.WORK_ORDER, state, ts, dept="Сервис", master=master,
            repair_type=repair_type, comment=comment,
        )  # fmt: skip
        doc_id = doc["id"]
        works, works_sum = self.work_lines(c, doc_id, rng.randint(1, 3))
        goods = self.pick_goods(rng.choice([0, 1, 1, 2, 3]))
        _, goods_sum = self.goods_lines(
            c, doc_id, goods, len(works) + 1, shipped=state is DocState.CLOSED
        )
        amount = doc["amount"] = works_sum + goods_sum
        if goods and rng.random() < 0.3:
            for item, cat, maker, _, _ in goods:
                self.selection(c, car, LineKind.GOODS, item, cat, maker, "price_list", ts)
        if state is DocState.CLOSED:
            r = rng.random()
            paid = amount if r < 0.9 else amount // 2 if r < 0.95 else 0
            if paid:
                self.payment(c, doc_id, paid, self.work_time(ts, min(self.now, ts + 3 * DAY)))
        elif state is DocState.COMPLETED:
            if rng.random() < 0.3:
                self.payment(c, doc_id, amount // 2, ts)
            self.event_at(c, car, ts + HOUR, EventKind.SMS, "Ваш автомобиль готов к выдаче")
        elif state is DocState.IN_PROGRESS:
            self.booking(c, self.day_of(ts) - self.today, car=car, arrived=True)
        elif state is DocState.REQUEST:
            self.booking(c, rng.choice([0, 0, 1, 2, 3]), car=car)

    def event_at(self, c: _Client, car: _Car, ts: int, kind: EventKind, text: str) -> None:
        ts = min(ts, self.now)
        self.out.add(
            "events",
            {
                "id": self.next_id("events"),
                "client_id": c.id,
                "car_id": car.id,
                "kind": kind.value,
                "direction": Direction.OUTGOING.value,
                "author_id": c.manager_id or self.staff_member(self.managers),
                "text": text,
                "result": None,
                "delivery_status": "delivered",
                "created_at": self.dt(ts),
                "processed_at": self.dt(ts),
                "processed_by_id": c.manager_id,
            },
        )
        self.summary.events += 1
        self.touch(c, car, ts)

    def customer_order(self, c: _Client, state: DocState, ts: int | None = None) -> None:
        rng = self.rng
        car = c.cars[rng.randrange(len(c.cars))] if c.cars and rng.random() < 0.7 else None
        if ts is None:
            if state is DocState.OPEN:
                ts = self.work_time(max(c.created, self.now - 10 * DAY), self.now)
            else:
                ts = self.work_time(c.created, self.now - DAY)
        goods = self.pick_goods(rng.randint(1, 3))
        doc = self.document(c, car, DocType.CUSTOMER_ORDER, state, ts, dept="Магазин запчастей")
        doc_id = doc["id"]
        lines, amount = self.goods_lines(c, doc_id, goods, 1, shipped=state is DocState.CLOSED)
        doc["amount"] = amount
        self.order_followups(c, car, doc_id, state, ts, goods, lines, amount)

    def order_followups(
        self,
        c: _Client,
        car: _Car | None,
        doc_id: int,
        state: DocState,
        ts: int,
        goods: list[tuple[str, str, str, int, int]],
        lines: list[tuple[int, int]],
        amount: int,
    ) -> None:
        """Reservations, invoice, sale and payment of a customer order."""
        rng = self.rng
        company = c.kind == ClientKind.COMPANY.value
        closed_at = self.work_time(ts, min(self.now, ts + 5 * DAY))
        if state is DocState.OPEN or rng.random() < 0.5:
            warehouse = self.warehouses[0]
            released = None if state is DocState.OPEN else self.dt(closed_at)
            for line_id, qty in lines:
                if state is DocState.OPEN and rng.random() < 0.3:
                    continue  # not in stock yet
                self.out.add(
                    "reservations",
                    {
                        "id": self.next_id("reservations"),
                        "client_id": c.id,
                        "document_id": doc_id,
                        "line_id": line_id,
                        "warehouse_id": warehouse,
                        "qty_milli": qty,
                        "created_at": self.dt(ts),
                        "released_at": released,
                    },
                )
                self.summary.reservations += 1
        if state is DocState.CANCELLED:
            return
        if company or (state is DocState.CLOSED and rng.random() < 0.4):
            self.copy_document(c, car, DocType.INVOICE, doc_id, ts, goods, shipped=False)
        if state is DocState.OPEN:
            if rng.random() < 0.3:
                self.payment(c, doc_id, amount // 2, ts)
            return
        self.copy_document(c, car, DocType.SALE, doc_id, closed_at, goods, shipped=True)
        if rng.random() < 0.9:
            self.payment(c, doc_id, amount, closed_at)

    def copy_document(
        self,
        c: _Client,
        car: _Car | None,
        doc_type: DocType,
        base_id: int,
        ts: int,
        goods: list[tuple[str, str, str, int, int]],
        *,
        shipped: bool,
    ) -> None:
        doc = self.document(
            c, car, doc_type, DocState.POSTED, ts, dept="Магазин запчастей", base_id=base_id
        )
        _, doc["amount"] = self.goods_lines(c, doc["id"], goods, 1, shipped=shipped)

    def repair_request(self, c: _Client, state: DocState) -> None:
        rng = self.rng
        car = c.cars[rng.randrange(len(c.cars))]
        lo = max(c.created, car.created)
        if state is DocState.OPEN:
            ts = self.work_time(max(lo, self.now - 7 * DAY), self.now)
        else:
            ts = self.work_time(lo, self.now - DAY)
        self.document(
            c, car, DocType.REPAIR_REQUEST, state, ts, dept="Сервис",
            comment=COMPLAINTS[rng.randrange(len(COMPLAINTS))],
        )  # fmt: skip

    def repair_plan(self, c: _Client, ts: int) -> None:
        rng = self.rng
        car = c.cars[rng.randrange(len(c.cars))]
        ts = max(ts, car.created)
        doc = self.document(
            c, car, DocType.REPAIR_PLAN, DocState.POSTED, ts, dept="Сервис",
            master=self.staff_member(self.masters),
            comment="Рекомендовано при следующем визите",
        )  # fmt: skip
        works, doc["amount"] = self.work_lines(c, doc["id"], rng.randint(1, 3))
        for work, article in works:
            self.selection(c, car, LineKind.WORK, work, article, None, "repair_plan", ts)

    def selection(
        self,
        c: _Client,
        car: _Car | None,
        kind: LineKind,
        item: str,
        catalogue_number: str | None,
        maker: str | None,
        source: str,
        ts: int,
    ) -> None:
        self.out.add(
            "selections",
            {
                "id": self.next_id("selections"),
                "client_id": c.id,
                "car_id": car.id if car else None,
                "staff_id": self.staff_member(self.masters),
                "kind": kind.value,
                "item": item,
                "catalogue_number": catalogue_number,
                "maker": maker or None,
                "source": source,
                "created_at": self.dt(max(c.created, ts - self.trng.randrange(60, HOUR))),
            },
        )
        self.summary.selections += 1

    def booking(
        self, c: _Client, day: int, *, car: _Car | None = None, arrived: bool = False
    ) -> None:
        """A booking ``day`` days from today (shop time zone)."""
        rng, trng = self.rng, self.trng
        car = car or (c.cars[rng.randrange(len(c.cars))] if c.cars else None)
        start = self.at(self.today + day, trng.randrange(18, 39) * 30)  # 9:00 .. 19:00
        end = start + trng.choice([1, 1, 2, 2, 3]) * HOUR
        created = min(self.now, max(c.created, start - trng.randrange(HOUR, 10 * DAY)))
        chance = trng.random()
        if arrived or (start <= self.now and chance < 0.85):
            state = BookingState.ARRIVED if start <= self.now else BookingState.ACTIVE
        elif start <= self.now:
            state = BookingState.CANCELLED
        else:
            state = BookingState.ACTIVE if chance < 0.92 else BookingState.CANCELLED
        author = c.manager_id or self.staff_member(self.managers)
        bay = self.free_bay(start, end, rng.randrange(self.base_bays))
        self.out.add(
            "bookings",
            {
                "id": self.next_id("bookings"),
                "client_id": c.id,
                "car_id": car.id if car else None,
                "bay": bay,
                "starts_at": self.dt(start),
                "ends_at": self.dt(end),
                "reason": self.works.pick(rng)[0],
                "state": state.value,
                "author_id": author,
                "manager_id": author,
                "created_at": self.dt(created),
            },
        )
        self.summary.bookings += 1
        if day == 0:
            self.summary.bookings_today += 1
        self.touch(c, car, created)

    def free_bay(self, start: int, end: int, first: int) -> str:
        """A bay with nothing booked from ``start`` to ``end``, trying the bays in turn from
        ``first``: bookings of one bay never overlap, as the booking service keeps them.
        When every bay is taken, the shop gets another one (``Пост 6``, ...). Cancelled
        bookings keep their time too, so that the bays depend on the times alone (another
        ``now`` moves the times and changes nothing else)."""
        day = self.day_of(start)  # the shop's day: one day's bookings share a bucket
        for k in range(len(self.bays)):
            bay = self.bays[(first + k) % len(self.bays)]
            taken = self.bay_times.setdefault((bay, day), [])
            if all(end <= s or start >= e for s, e in taken):
                break
        else:
            bay = f"Пост {sum(b.startswith('Пост ') for b in self.bays) + 1}"
            self.bays.append(bay)
            taken = self.bay_times.setdefault((bay, day), [])
        taken.append((start, end))
        return bay

    # --- client #1, as on the seed's screenshots --------------------------------------------

    def seed_client(self) -> None:
        cid = self.next_id("clients")
        created = min(self.created_ts(1), self.now - 400 * DAY)
        # 10 % off, as on the seed's order line; no discount card, as on the screenshot
        c = _Client(cid, ClientKind.PERSON.value, created, created, 1000, False, None, [])
        car = self.write_car(c, *SEED_CAR, None, SEED_VIN, None, SEED_PLATE, 2006)
        car.mileage = 187_400
        day = datetime(2020, 10, 20, 10, 59, tzinfo=self.tz)
        ts = min(int(day.timestamp()), self.now - 30 * DAY)
        c.created = c.last = car.created = car.last = min(created, ts - 30 * DAY)
        self.repair_plan(c, ts)  # ЦОА0000001 of 20.10.2020 in a new database
        shock = ("Амортизатор задней подвески", "2108-2915004", "", 13000, 1000)
        order = self.document(
            c, car, DocType.CUSTOMER_ORDER, DocState.CLOSED, ts, dept="Магазин запчастей"
        )
        _, amount = self.goods_lines(c, order["id"], [shock], 1, shipped=True)
        order["amount"] = amount  # 130,00 less 10 % = 117,00
        self.copy_document(c, car, DocType.INVOICE, order["id"], ts, [shock], shipped=False)
        self.copy_document(c, car, DocType.SALE, order["id"], ts + HOUR, [shock], shipped=True)
        self.payment(c, order["id"], amount, ts + HOUR)
        self.event(c, self.now - 3 * DAY)
        contacts: list[tuple[str, str, str | None]] = [
            (ContactKind.EMAIL.value, "ivanov@mail.ru", None),
            (ContactKind.MOBILE.value, SEED_PHONE, None),
        ]
        self.write_client(c, "Иванов Иван", None, contacts, [], None)


def _count(rng: random.Random, mean: float) -> int:
    """0, 1 or 2 with the given mean (small means)."""
    r = rng.random()
    if r < mean * 0.85:
        return 1
    if r < mean * 0.85 + mean * 0.075:
        return 2
    return 0


def _pick_wo_state(rng: random.Random) -> DocState:
    r = rng.random()
    if r < 0.72:
        return DocState.CLOSED
    if r < 0.79:
        return DocState.COMPLETED
    if r < 0.88:
        return DocState.IN_PROGRESS
    if r < 0.94:
        return DocState.REQUEST
    return DocState.CANCELLED


def _pick_co_state(rng: random.Random) -> DocState:
    r = rng.random()
    return DocState.CLOSED if r < 0.65 else DocState.OPEN if r < 0.9 else DocState.CANCELLED


# --- the entry point ----------------------------------------------------------------------


async def _read_state(engine: AsyncEngine) -> _State:
    async with engine.connect() as conn:
        clients = await conn.scalar(select(func.count()).select_from(Client))
        max_ids: dict[str, int] = {}
        for table in Base.metadata.sorted_tables:
            if "id" in table.c and table.c.id.primary_key:
                max_ids[table.name] = int(await conn.scalar(select(func.max(table.c.id))) or 0)
        counters = {
            doc_type: int(value)
            for doc_type, value in await conn.execute(
                select(DocCounter.doc_type, DocCounter.last_value).where(
                    DocCounter.prefix == PREFIX
                )
            )
        }
        staff = {k: v for k, v in await conn.execute(select(Staff.telegram_id, Staff.id))}
        price_types = {k: v for k, v in await conn.execute(select(PriceType.code, PriceType.id))}
        warehouses = {k: v for k, v in await conn.execute(select(Warehouse.name, Warehouse.id))}
    return _State(int(clients or 0), max_ids, counters, staff, price_types, warehouses)


async def _save_counters(engine: AsyncEngine, numbers: dict[str, int]) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(DocCounter).where(DocCounter.prefix == PREFIX))
        rows = [
            {"doc_type": doc_type, "prefix": PREFIX, "last_value": value}
            for doc_type, value in sorted(numbers.items())
            if value
        ]
        if rows:
            await conn.execute(insert(DocCounter), rows)


async def generate(
    engine: AsyncEngine,
    *,
    clients: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    tz: ZoneInfo,
    now: datetime | None = None,
    bays: Sequence[str] = BAYS,
) -> DemoSummary:
    """Fills a database that has no clients yet with ``clients`` clients of a demo shop.

    The same ``seed``, ``clients`` and ``now`` give the same rows. ``progress(n)`` is called
    with the number of clients just written. Bookings "for today" are for the day of
    ``now`` (default: the current time) in the shop's time zone ``tz``.
    """
    if clients < 1:
        raise ValueError("clients must be 1 or more")
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    started = time.perf_counter()
    state = await _read_state(engine)
    if state.clients:
        raise DemoError(
            f"the database already has {state.clients} clients; "
            "demo data goes into a database without clients"
        )
    shop = _Shop(DemoRandom(seed), clients, now, tz, state, bays)
    shop.reference()
    async with BulkLoader(engine, defer_search_index=True, defer_reference_checks=True) as loader:
        # On PostgreSQL the next chunk is made in a thread while the server stores the last
        # one. SQLite stores in this process: the two threads would only fight for the GIL
        # (measured: a third slower), so there the chunks take turns.
        overlap = loader.dialect == "postgresql"
        writing: asyncio.Task[None] | None = None
        writing_count = done = 0
        try:
            while done < clients:
                count = min(CHUNK_CLIENTS, clients - done)
                if overlap:
                    rows = await asyncio.to_thread(shop.chunk, done, count)
                else:
                    rows = shop.chunk(done, count)
                done += count
                if writing is not None:
                    await writing
                    if progress is not None:
                        progress(writing_count)
                writing, writing_count = asyncio.create_task(loader.write(rows)), count
            if writing is not None:
                await writing
                if progress is not None:
                    progress(writing_count)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writing
    await _save_counters(engine, shop.numbers)
    summary = shop.summary
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = ["CHUNK_CLIENTS", "PREFIX", "DemoError", "DemoSummary", "generate"]
